"""Published numbers beside a report's matching rows (``samat report --against paper``).

Plugins supply them as tables through ``samat_reference_results`` (format: docs/reporting.md):
a table applies to a report table whose task config and attack metric it matches; if the runs
also have the paper's ``setting`` (model width, depth, ...: task parameters, unset ones taking
the table's ``defaults``), each of its rows is inserted below the user rows trained with the
same method, with values in the columns whose attack has the reference column's parameters;
otherwise a note says which parameter differs.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from samat import plugins
from samat.recipe import normalize
from samat.report.runs import perturbations
from samat.report.tables import AVERAGE, NATURAL, Row, Table

REFERENCE_ROW = "↳ paper: "
MATCHED = ("rows marked 'paper' quote the paper for the same task and method, in the columns "
           "whose attack has the paper's parameters")
UNMATCHED = "--against paper: no paper row has this task and method"


def reference_tables() -> list[dict[str, Any]]:
    """Every plugin's reference tables, fractions such as ``8/255`` read as numbers; a malformed
    table is logged and left out."""
    tables = []
    for table in map(normalize, plugins.reference_tables()):
        problem = _problem(table)
        if problem:
            logging.getLogger("samat").warning(
                "plugin '%s': reference table %s left out: %s", table.get("plugin"),
                table.get("ref"), problem)
            continue
        tables.append(table)
    return tables


def _problem(table: dict[str, Any]) -> str | None:
    """What keeps ``table`` from being a reference table (None if nothing)."""
    for key, kind in (("ref", str), ("task", dict), ("metric", str), ("columns", dict),
                      ("order", list), ("rows", list)):
        if not isinstance(table.get(key), kind):
            return f"'{key}' missing or not a {kind.__name__}"
    for key in ("setting", "defaults"):
        if not isinstance(table.get(key, {}), dict):
            return f"'{key}' is not a mapping"
    if NATURAL not in table["order"]:
        return f"'order' has no {NATURAL}"
    if not all(isinstance(spec, dict) for spec in table["columns"].values()):
        return "a column's attack parameters are not a mapping"
    for row in table["rows"]:
        if not (isinstance(row, dict) and isinstance(row.get("method"), dict)
                and isinstance(row.get("label"), str) and isinstance(row.get("values"), list)
                and len(row["values"]) == len(table["order"])
                and all(isinstance(v, int | float) for v in row["values"])):
            return "a row lacks 'method', 'label' or one number per 'order' entry"
    return None


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, float | int) and isinstance(value, float | int):
        return math.isclose(float(value), float(wanted), rel_tol=1e-6, abs_tol=1e-12)
    return value == wanted


def matches(data: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Every key of ``spec`` is in ``data`` with an equal value (floats within 1e-6)."""
    return all(k in data and _same(data[k], v) for k, v in spec.items())


def method_matches(config: dict[str, Any], method: dict[str, Any]) -> bool:
    """Whether a run's training config is the reference row's method: the named weight/input
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


def add_reference_rows(tables: list[Table]) -> None:
    """Insert, after each user row of ``tables``, the reference rows with the same task and
    method; notes say what matched (and the reference tables' own notes)."""
    references = reference_tables()
    for table in tables:
        _add_rows(table, references)


def _add_rows(table: Table, references: list[dict[str, Any]]) -> None:
    config_task = table.rows[0].runs[0].config.get("task") if table.rows else None
    if not isinstance(config_task, dict):
        return
    rows: list[Row] = []
    notes: dict[str, None] = {}  # the matched tables' notes, once each, in order
    applicable = []
    unmatched: dict[str, list[str]] = {}  # why -> the reference tables not compared for it
    for reference in references:
        if reference["metric"] != table.attack_metric \
                or not matches(config_task, reference["task"]):
            continue
        differences = setting_differences(config_task, reference)
        if differences:
            refs = unmatched.setdefault("; ".join(differences), [])
            refs += [] if reference["ref"] in refs else [reference["ref"]]
        else:
            applicable.append(reference)
    without = []  # user rows of the paper's setting whose method the paper has no row for
    for row in table.rows:
        rows.append(row)
        before = len(rows)
        for reference in applicable:
            for entry in reference["rows"]:
                if method_matches(row.runs[0].config, entry["method"]):
                    rows.append(_reference_row(table, reference, entry))
                    notes.setdefault(MATCHED)
                    if reference.get("note"):
                        notes.setdefault(str(reference["note"]).strip())
        if applicable and len(rows) == before:
            without.append(row.label)
    table.rows = rows
    if notes and without:
        refs = ", ".join(dict.fromkeys(r["ref"] for r in applicable))
        notes.setdefault(f"no paper row for {', '.join(without)}: {refs} did not train that "
                         "method")
    table.notes += [*notes, *(f"{_where(table)}: not compared with {', '.join(refs)}: {why}"
                              for why, refs in unmatched.items())] or [UNMATCHED]


def setting_differences(task: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """How a run's task config departs from the reference table's ``setting`` (a parameter
    the run leaves unset has the table's ``defaults`` value): ``width 16, the paper's is 64``."""
    differences = []
    defaults = reference.get("defaults", {})
    for key, wanted in reference.get("setting", {}).items():
        value = task.get(key)
        value = defaults.get(key) if value is None else value
        if not _same(value, wanted):
            differences.append(f"{key} {_shown(value)}, the paper's is {_shown(wanted)}")
    return differences


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)


def _where(table: Table) -> str:
    """The runs of ``table`` as one path: the run itself, or the directory holding them."""
    paths = sorted({str(r.path) for row in table.rows for r in row.runs})
    try:
        return paths[0] if len(paths) == 1 else os.path.commonpath(paths) or "the runs"
    except ValueError:  # absolute and relative paths mixed
        return "the runs"


def _reference_row(table: Table, reference: dict[str, Any], entry: dict[str, Any]) -> Row:
    values = dict(zip(reference["order"], entry["values"], strict=True))
    row = Row(f"{REFERENCE_ROW}{entry['label']}", [], reference=reference["ref"])
    row.values[NATURAL] = [float(values[NATURAL])]
    covered = set()
    for column in table.columns:
        for name, spec in reference["columns"].items():
            if name in values and matches(column.attack, spec):
                row.values[column.name] = [float(values[name])]
                covered.add(name)
    attack_names = [n for n in reference["order"] if n not in (NATURAL, AVERAGE)]
    if AVERAGE in values and covered >= set(attack_names):
        row.values[AVERAGE] = [float(values[AVERAGE])]
    return row
