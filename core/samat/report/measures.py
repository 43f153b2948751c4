"""Measures in ``metrics.json`` (``measures``: sharpness, Hessian eigenvalues, input-gradient
norm, ...) as the report reads them: each entry's headline ``value`` is a column titled by its
``label``; any other scalar is reachable as ``LABEL.KEY`` (``--extra hessian.trace``)."""

from __future__ import annotations

import math
from typing import Any, Protocol


class Run(Protocol):
    """What this module reads of a report run (:class:`samat.report.runs.Run`)."""

    metrics: dict[str, Any]


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def measure_entries(run: Run) -> list[dict[str, Any]]:
    """The run's measure results (none for runs that measured nothing)."""
    return run.metrics.get("measures") or []


def measure_setting(entry: dict[str, Any]) -> dict[str, Any]:
    """The measure's parameters that define it across runs: its ``describe()`` without the
    ``seed``, which follows the run seed (seeds are the rows' replicates, not a setting)."""
    return {k: v for k, v in entry["measure"].items() if k != "seed"}


def measure_value(run: Run, dotted: str) -> float | None:
    """The scalar ``KEY`` of the run's measure ``LABEL`` for ``dotted`` = ``LABEL.KEY``."""
    label, _, key = dotted.rpartition(".")
    for entry in measure_entries(run):
        if entry["label"] == label:
            return finite_number((entry.get("values") or {}).get(key))
    return None


def measure_value_names(runs: list[Run]) -> list[str]:
    """Every ``LABEL.KEY`` some run has a number for."""
    return sorted({f"{e['label']}.{k}" for r in runs for e in measure_entries(r)
                   for k, v in (e.get("values") or {}).items() if finite_number(v) is not None})


def measure_examples(entry: dict[str, Any]) -> int | None:
    """How many examples the measure used (its entry's, else its parameters')."""
    n = entry.get("n_examples", (entry.get("measure") or {}).get("n_examples"))
    return int(n) if finite_number(n) is not None else None


def measures_problem(measures: Any) -> str | None:
    """What keeps a ``measures`` list from being read (None if nothing)."""
    if not isinstance(measures, list):
        return "'measures' is not a list"
    for entry in measures:
        if not (isinstance(entry, dict) and isinstance(entry.get("label"), str)
                and isinstance(entry.get("measure"), dict) and isinstance(entry.get("key"), str)):
            return "'measures' has an entry without 'label', 'measure' or 'key'"
        if entry.get("value") is not None and finite_number(entry["value"]) is None:
            return f"measure '{entry['label']}': 'value' is not a finite number"
        values = entry.get("values", {})
        if not isinstance(values, dict) or any(
                v is not None and not isinstance(v, bool) and isinstance(v, int | float)
                and finite_number(v) is None for v in values.values()):
            return f"measure '{entry['label']}': 'values' is not a mapping of finite numbers"
    return None
