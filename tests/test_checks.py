"""``samat.checks``: parameter checks in one house style, bools never numbers."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from samat import check_choice, check_fraction, check_int, check_number


@pytest.mark.parametrize(("value", "minimum"), [(1, 1), (5, 1), (0, 0), (8, 8), (np.int64(3), 1)])
def test_check_int_accepts_integers(value: object, minimum: int) -> None:
    result = check_int("n", value, minimum)
    assert result == value and type(result) is int


@pytest.mark.parametrize("value", [0, -1, True, False, 2.0, 2.5, "3", None, math.nan, math.inf])
def test_check_int_refuses(value: object) -> None:
    with pytest.raises(ValueError, match=rf"^n must be an integer >= 1, got {value!r}$"):
        check_int("n", value)


def test_check_int_optional() -> None:
    assert check_int("n_train", None, optional=True) is None
    assert check_int("n_train", 4, optional=True) == 4
    with pytest.raises(ValueError, match=r"^n_train must be an integer >= 1 or null, got 0$"):
        check_int("n_train", 0, optional=True)


def test_check_int_whole_floats() -> None:
    result = check_int("crop_size", 64.0, 8, whole_floats=True)
    assert result == 64 and type(result) is int
    for value in (2.0, 8.5, math.inf, math.nan, True):
        with pytest.raises(ValueError, match=r"^crop_size must be an integer >= 8, got "):
            check_int("crop_size", value, 8, whole_floats=True)


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.25), Fraction(1, 3)])
def test_check_number_accepts_real_numbers(value: object) -> None:
    result = check_number("x", value)
    assert result == float(value) and type(result) is float


@pytest.mark.parametrize(
    ("kwargs", "value", "message"),
    [
        ({}, True, "x must be a finite number, got True"),
        ({}, "1", "x must be a finite number, got '1'"),
        ({}, math.inf, "x must be a finite number, got inf"),
        ({}, math.nan, "x must be a finite number, got nan"),
        ({"minimum": 0, "strict_min": True}, 0, "x must be a finite number > 0, got 0"),
        ({"minimum": 0}, -0.1, "x must be a finite number >= 0, got -0.1"),
        ({"maximum": 1, "strict_max": True}, 1, "x must be a finite number < 1, got 1"),
        ({"minimum": 0, "finite": False}, -1, "x must be a number >= 0, got -1"),
        ({"minimum": 0, "finite": False}, math.nan, "x must be a number >= 0, got nan"),
        ({"minimum": 0.5, "maximum": 1, "strict_min": True, "strict_max": True}, 0.5,
         "x must be a number in (0.5, 1), got 0.5"),
        ({"minimum": 0, "maximum": 1}, 2, "x must be a number in [0, 1], got 2"),
    ],
)
def test_check_number_refuses_in_one_style(kwargs: dict, value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_number("x", value, **kwargs)
    assert str(info.value) == message


def test_check_number_bounds_are_inclusive_unless_strict() -> None:
    assert check_number("x", 0, minimum=0) == 0.0
    assert check_number("x", 1, maximum=1) == 1.0
    assert check_number("x", math.inf, minimum=0, finite=False) == math.inf


@pytest.mark.parametrize("value", [1, 0.5, 1e-9])
def test_check_fraction_accepts_zero_to_one(value: float) -> None:
    assert check_fraction("beta", value) == value


@pytest.mark.parametrize("value", [0, -0.1, 1.5, True, math.nan, None])
def test_check_fraction_refuses(value: object) -> None:
    with pytest.raises(ValueError, match=r"^beta must be a number in \(0, 1\], got "):
        check_fraction("beta", value)


def test_check_choice() -> None:
    assert check_choice("norm", "l2", ("linf", "l2")) == "l2"
    assert check_choice("norm", "linf", {"linf": "Linf", "l2": "L2"}) == "linf"
    for value in ("l1", ["linf"], None):
        with pytest.raises(ValueError) as info:
            check_choice("norm", value, {"linf": "Linf", "l2": "L2"})
        assert str(info.value) == f"norm must be one of linf, l2, got {value!r}"
    with pytest.raises(ValueError, match=r"^stride must be one of 8, 16, got 4$"):
        check_choice("stride", 4, (8, 16))
