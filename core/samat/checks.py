"""Parameter checks in one house style: ``ValueError("steps must be an integer >= 1, got 0")``.

Factories (tasks, attacks, perturbations, optimizers) call them on their arguments; samat puts
the recipe path in front (``train.input_perturbation: steps must be ...``). A ``bool`` is never
accepted as a number, ``NaN`` never as a number in any range.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real
from typing import Any, Literal, TypeVar, overload

T = TypeVar("T")


@overload
def check_int(name: str, value: Any, minimum: int = 1, *, optional: Literal[False] = False,
              whole_floats: bool = False) -> int: ...


@overload
def check_int(name: str, value: Any, minimum: int = 1, *, optional: bool,
              whole_floats: bool = False) -> int | None: ...


def check_int(name: str, value: Any, minimum: int = 1, *, optional: bool = False,
              whole_floats: bool = False) -> int | None:
    """``value`` as an ``int >= minimum``. ``optional``: ``None`` is accepted (and returned);
    ``whole_floats``: so is a float with an integral value (``8.0``)."""
    if optional and value is None:
        return None
    number = int(value) if whole_floats and isinstance(value, float) and value.is_integer() \
        else value
    if isinstance(number, bool) or not isinstance(number, Integral) or number < minimum:
        what = f"an integer >= {minimum}{' or null' if optional else ''}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(number)


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
    strict_max: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a float in ``[minimum, maximum]`` (either bound optional; ``strict_*``
    excludes it); ``finite=False`` accepts ±inf within the bounds."""
    ok = not isinstance(value, bool) and isinstance(value, Real) and value == value
    if ok and finite:
        ok = -math.inf < value < math.inf
    if ok and minimum is not None:
        ok = value > minimum if strict_min else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if strict_max else value <= maximum
    if not ok:
        if minimum is not None and maximum is not None:  # the range itself says "finite"
            what = (f"a number in {'(' if strict_min else '['}{minimum}, "
                    f"{maximum}{')' if strict_max else ']'}")
        else:
            what = "a finite number" if finite else "a number"
            if minimum is not None:
                what += f" {'>' if strict_min else '>='} {minimum}"
            if maximum is not None:
                what += f" {'<' if strict_max else '<='} {maximum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float in (0, 1]."""
    return check_number(name, value, minimum=0, maximum=1, strict_min=True)


def check_choice(name: str, value: Any, choices: Collection[T]) -> T:
    """``value``, which must be one of ``choices`` (a mapping: one of its keys)."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(str, options))}, got {value!r}")
    return value
