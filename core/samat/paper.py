"""The paper's published numbers (``paper_results.yaml``) beside a report's matching rows."""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

import yaml

from samat.recipe import normalize
from samat.report import AVERAGE, NATURAL, Row, Table, perturbations


@cache
def paper_tables() -> list[dict[str, Any]]:
    """The paper's tables: ``ref``, ``task``, ``metric``, ``columns``, ``order``, ``rows``."""
    text = resources.files("samat").joinpath("paper_results.yaml").read_text(encoding="utf-8")
    return normalize(yaml.safe_load(text))["tables"]


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, float | int) and isinstance(value, float | int):
        return math.isclose(float(value), float(wanted), rel_tol=1e-6, abs_tol=1e-12)
    return value == wanted


def matches(data: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Every key of ``spec`` is in ``data`` with an equal value (floats within 1e-6)."""
    return all(k in data and _same(data[k], v) for k, v in spec.items())


def method_matches(config: dict[str, Any], method: dict[str, Any]) -> bool:
    """Whether a run's training config is the paper row's method: the named weight/input
    perturbation (the other one absent) and, if given, the base optimizer."""
    train = config.get("train", {})
    for key, actual in zip(("weight", "input"), perturbations(config), strict=True):
        spec = method.get(key)
        if spec is None and actual.get("name") != "none":
            return False
        if spec is not None and not matches(actual, spec):
            return False
    optimizer = method.get("optimizer")
    return optimizer is None or (train.get("optimizer") or {}).get("name") == optimizer


def add_paper_rows(table: Table) -> None:
    """Insert, after each user row, the paper rows with the same task and method; cells where
    the user's attack has the paper column's parameters."""
    config_task = table.rows[0].runs[0].config.get("task") if table.rows else None
    if not isinstance(config_task, dict):
        return
    rows: list[Row] = []
    matched = False
    for row in table.rows:
        rows.append(row)
        for paper in paper_tables():
            if paper["metric"] != table.attack_metric or not matches(config_task, paper["task"]):
                continue
            for entry in paper["rows"]:
                if method_matches(row.runs[0].config, entry["method"]):
                    rows.append(_paper_row(table, paper, entry))
                    matched = True
    table.rows = rows
    if matched:
        table.notes.append(
            "rows marked 'paper' quote the paper (PAPER.md) for the same task and method, in the "
            "columns whose attack has the paper's parameters; its AutoAttack was APGD-T 5 steps "
            "(PAPER.md, known defects)")
    else:
        table.notes.append("--against paper: no paper row has this task and method")


def _paper_row(table: Table, paper: dict[str, Any], entry: dict[str, Any]) -> Row:
    values = dict(zip(paper["order"], entry["values"], strict=True))
    row = Row(f"↳ paper: {entry['label']}", [], reference=paper["ref"])
    row.values[NATURAL] = [float(values[NATURAL])]
    covered = set()
    for column in table.columns:
        for name, spec in paper["columns"].items():
            if name in values and matches(column.attack, spec):
                row.values[column.name] = [float(values[name])]
                covered.add(name)
    attack_names = [n for n in paper["order"] if n not in (NATURAL, AVERAGE)]
    if AVERAGE in values and covered >= set(attack_names):
        row.values[AVERAGE] = [float(values[AVERAGE])]
    return row
