"""Report tables: one per task, one row per method (runs differing only in the seed averaged),
columns Natural, each attack, Average and any ``--extra``; mean ± sample std per cell."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from samat.errors import SamatError
from samat.plugins import registries
from samat.recipe import flatten
from samat.report.labels import kind_rank, metric_title, natural_key, run_label, short
from samat.report.runs import Run

# Config keys that do not define a method (bookkeeping); the seed and the task's environment
# parameters are left out as well (see :attr:`Run.task`).
IGNORED_KEYS = ("seed", "name", "description", "device", "output_dir", "train.num_workers",
                "train.eval_every", "train.checkpoint_every", "eval.batch_size", "eval.attacks",
                "logging")
NATURAL, AVERAGE = "Natural", "Average"


@dataclass
class Column:
    """An attack column: the label results use and the attack's parameters."""

    name: str
    attack: dict[str, Any]


@dataclass
class Row:
    """One method/configuration: its runs and every column's per-run values."""

    label: str
    runs: list[Run]
    values: dict[str, list[float]] = field(default_factory=dict)
    reference: str | None = None  # set on rows quoted from published results

    @property
    def seeds(self) -> list[int]:
        """Seeds of the runs behind the numbers (diverged runs excluded)."""
        return sorted(r.seed for r in self.runs if not r.diverged)

    @property
    def diverged_seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs if r.diverged)


@dataclass
class Table:
    """Rows × (Natural, attacks..., Average) for one task."""

    title: str
    metric: str  # the natural metric's key
    attack_metric: str  # the key read from each attack result
    higher_is_better: bool
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)  # task ``report`` scalars shown after Average
    task: dict[str, Any] = field(default_factory=dict)  # the task config the rows share

    @property
    def headers(self) -> list[str]:
        return [NATURAL, *(c.name for c in self.columns), AVERAGE, *self.extras]

    def cell(self, row: Row, header: str, decimals: int, pm: str = " ± ") -> str:
        """``mean ± std`` of ``row`` in column ``header`` (extras with 4 significant digits)."""
        return cell(row.values.get(header), decimals, pm, header in self.extras)

    def direction(self) -> str:
        """Which way is better, for the header."""
        natural = f"{metric_title(self.metric)}, higher is better"
        if self.attack_metric == self.metric:
            better = "higher" if self.higher_is_better else "lower"
            return f"{metric_title(self.metric)}, {better} is better"
        return (f"Natural: {natural}; attack columns and Average: "
                f"{metric_title(self.attack_metric)}, "
                f"{'higher' if self.higher_is_better else 'lower'} is better")


def identity(run: Run) -> dict[str, Any]:
    """The flattened config keys that define ``run``'s method and task."""
    flat = flatten({**run.config, "task": run.task})
    kept = {k: v for k, v in flat.items()
            if not any(k == i or k.startswith(i + ".") for i in IGNORED_KEYS)}
    if isinstance(run.metrics.get("evaluated"), dict):  # samat eval: a row of its own
        kept["evaluated"] = run_label(run.metrics, run.config)
    return kept


def _task_title(task: dict[str, Any]) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in task.items() if k != "name")
    return f"{task.get('name', '?')}" + (f" ({rest})" if rest else "")


def _attack_identity(attack: dict[str, Any]) -> str:
    shown = {k: v for k, v in attack.items() if k not in ("bounds", "mask")}
    return json.dumps(shown, sort_keys=True, default=str)


def build_tables(
    runs: list[Run], attack_metric: str | None = None, extras: list[str] = ()
) -> list[Table]:
    """One :class:`Table` per task found in ``runs``; ``extras`` are keys of the runs' task
    ``report`` (e.g. ``w_r``) shown as extra columns."""
    for key in extras:
        if not any(_report_scalar(r, key) is not None for r in runs):
            available = sorted({k for r in runs for k, v in r.metrics.get("report", {}).items()
                                if isinstance(v, int | float) and not isinstance(v, bool)})
            raise SamatError(f"--extra {key}: no run reports a number under report.{key} in "
                             f"metrics.json; available: {', '.join(available) or 'none'}")
    by_task: dict[str, list[Run]] = {}
    for run in runs:
        by_task.setdefault(json.dumps(run.task, sort_keys=True, default=str), []).append(run)
    tables = []
    for key, task_runs in by_task.items():
        task = json.loads(key)
        table = _build_table(_task_title(task), task_runs, attack_metric, list(extras))
        table.task = task
        tables.append(table)
    return tables


def _report_scalar(run: Run, key: str) -> float | None:
    value = run.metrics.get("report", {}).get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _build_table(
    title: str, runs: list[Run], attack_metric: str | None, extras: list[str]
) -> Table:
    metric = runs[0].metrics["metric"]
    key = attack_metric or metric
    notes: list[str] = []
    # columns: attack label -> distinct parameter sets (a label used for two attacks splits)
    columns: list[Column] = []
    column_of: dict[tuple[str, str], str] = {}
    for run in runs:
        for result in run.metrics.get("attacks", []):
            ident = (result["label"], _attack_identity(result["attack"]))
            if ident in column_of:
                continue
            taken = [c for c in columns if c.name.split(" #")[0] == result["label"]]
            name = result["label"] if not taken else f"{result['label']} #{len(taken) + 1}"
            column_of[ident] = name
            columns.append(Column(name, result["attack"]))
    missing_key = False
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(json.dumps(identity(run), sort_keys=True, default=str), []).append(run)
    rows = []
    for members in groups.values():
        row = Row(run_label(members[0].metrics, members[0].config), members)
        for run in members:
            if run.diverged:
                continue
            values = run.metrics["natural"]
            row.values.setdefault(NATURAL, []).append(float(values[metric]))
            attacked = []
            for result in run.metrics.get("attacks", []):
                if key not in result or result[key] is None:
                    missing_key = True
                    continue
                name = column_of[(result["label"], _attack_identity(result["attack"]))]
                row.values.setdefault(name, []).append(float(result[key]))
                attacked.append(float(result[key]))
            if attacked:
                row.values.setdefault(AVERAGE, []).append(sum(attacked) / len(attacked))
            for extra in extras:
                if (value := _report_scalar(run, extra)) is not None:
                    row.values.setdefault(extra, []).append(value)
        rows.append(row)
    _disambiguate(rows)
    rows.sort(key=lambda r: (kind_rank(r.runs[0].config), r.label != "SGD",
                             natural_key(r.label)))
    if missing_key:
        notes.append(f"some attack results have no '{key}' value; those cells are left out")
    if any(r.diverged_seeds for r in rows):
        notes.append("diverged: runs that stopped on a non-finite value (metrics.json status "
                     "diverged); they have no numbers and are left out of every mean")
    higher = bool(runs[0].metrics.get("higher_is_better", True))
    if key != metric:
        higher = registries().metric(key).higher_is_better
    table = Table(title, metric, key, higher, columns, rows, notes,
                  [e for e in extras if any(e in r.values for r in rows)])
    partial = [r.label for r in rows
               if any(0 < len(r.values.get(c.name, [])) < len(r.seeds) for c in columns)]
    if partial:
        notes.append("rows with an attack missing from some of their runs: " + ", ".join(partial)
                     + " (cells average the runs that have it; see n in CSV)")
    return table


def _disambiguate(rows: list[Row]) -> None:
    """Append the differing config keys to rows whose method labels collide."""
    by_label: dict[str, list[Row]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    for same in by_label.values():
        if len(same) < 2:
            continue
        idents = [identity(r.runs[0]) for r in same]
        keys = sorted({k for i in idents for k in i if any(j.get(k) != i.get(k) for j in idents)})
        for row, ident in zip(same, idents, strict=True):
            extra = ", ".join(f"{k.rsplit('.', 1)[-1]}={short(ident.get(k))}" for k in keys)
            row.label = f"{row.label} ({extra})"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value)."""
    if not values:
        return math.nan, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def cell(values: list[float] | None, decimals: int, pm: str = " ± ",
         significant: bool = False) -> str:
    """``mean ± std`` with ``decimals`` decimals (or 4 significant digits); ``—`` if empty."""
    if not values:
        return "—"
    mean, std = mean_std(values)
    spec = ".4g" if significant else f".{decimals}f"
    return f"{mean:{spec}}" + (f"{pm}{std:{'.2g' if significant else spec}}"
                               if std is not None else "")
