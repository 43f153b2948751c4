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
from samat.report.measures import (
    finite_number,
    measure_entries,
    measure_setting,
    measure_value,
    measure_value_names,
)
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
class MeasureColumn:
    """A measure column: the label results use, the measure's parameters (its ``describe()``)
    and the key of its headline value."""

    name: str
    measure: dict[str, Any]
    key: str


@dataclass
class Row:
    """One method/configuration: its runs and every column's per-run values."""

    label: str
    runs: list[Run]
    values: dict[str, list[float]] = field(default_factory=dict)
    reference: str | None = None  # set on rows quoted from published results
    # per attack column, the natural metric on the examples it attacked (when it reports it)
    subset_natural: dict[str, list[float]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        """Seeds of the runs behind the numbers (diverged runs excluded)."""
        return sorted(r.seed for r in self.runs if not r.diverged)

    @property
    def diverged_seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs if r.diverged)


@dataclass
class Table:
    """Rows × (Natural, attacks..., Average, measures..., extras...) for one task."""

    title: str
    metric: str  # the natural metric's key
    attack_metric: str  # the key read from each attack result
    higher_is_better: bool
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)  # ``--extra`` scalars shown last
    task: dict[str, Any] = field(default_factory=dict)  # the task config the rows share
    measures: list[MeasureColumn] = field(default_factory=list)
    n_examples: dict[str, list[int]] = field(default_factory=dict)  # per column, distinct n

    @property
    def headers(self) -> list[str]:
        return [NATURAL, *(c.name for c in self.columns), AVERAGE,
                *(m.name for m in self.measures), *self.extras]

    def title_of(self, header: str) -> str:
        """``header`` as shown: an attack column whose number of examples differs from the
        natural evaluation's gets its own (``PSO (n=40)``)."""
        n = self.n_examples.get(header)
        if not n or header == NATURAL or n == self.n_examples.get(NATURAL):
            return header
        return f"{header} (n={'/'.join(map(str, n))})"

    def unranked(self, header: str) -> bool:
        """Columns with no better direction (measures, extras): never bold, 4 significant
        digits."""
        return header in self.extras or any(m.name == header for m in self.measures)

    def cell(self, row: Row, header: str, decimals: int, pm: str = " ± ") -> str:
        """``mean ± std`` of ``row`` in column ``header`` (measures and extras with 4
        significant digits)."""
        return cell(row.values.get(header), decimals, pm, self.unranked(header))

    def direction(self) -> str:
        """Which way is better, for the header (measures: neither)."""
        natural = f"{metric_title(self.metric)}, higher is better"
        if self.attack_metric == self.metric:
            better = "higher" if self.higher_is_better else "lower"
            said = f"{metric_title(self.metric)}, {better} is better"
        else:
            said = (f"Natural: {natural}; attack columns and Average: "
                    f"{metric_title(self.attack_metric)}, "
                    f"{'higher' if self.higher_is_better else 'lower'} is better")
        return said + ("; measures: neither direction is better" if self.measures else "")


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
    ``report`` (e.g. ``w_r``) or a measure's non-headline value as ``LABEL.KEY`` (e.g.
    ``hessian.trace``), shown as extra columns."""
    for key in extras:
        if not any(extra_value(r, key) is not None for r in runs):
            available = sorted({k for r in runs for k, v in r.metrics.get("report", {}).items()
                                if finite_number(v) is not None})
            available += measure_value_names(runs)
            raise SamatError(f"--extra {key}: no run reports a number under report.{key} or "
                             f"as a measure value LABEL.KEY in metrics.json; available: "
                             f"{', '.join(available) or 'none'}")
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


def extra_value(run: Run, key: str) -> float | None:
    """An ``--extra`` column's number for ``run``: its task's ``report[key]``, else the
    measure value ``LABEL.KEY``."""
    value = finite_number(run.metrics.get("report", {}).get(key))
    return value if value is not None else measure_value(run, key)


def column_value(table: Table, run: Run, header: str) -> float | None:
    """``run``'s own number in column ``header`` of ``table`` (None if it has none): what the
    row's cell averages over its runs."""
    if run.diverged:
        return None
    if header == NATURAL:
        return float(run.metrics["natural"][table.metric])
    if header in table.extras:
        return extra_value(run, header)
    if header == AVERAGE:
        attacked = [v for c in table.columns if (v := column_value(table, run, c.name)) is not None]
        return sum(attacked) / len(attacked) if attacked else None
    for column in table.columns:
        if column.name == header:
            return next((finite_number(result.get(table.attack_metric))
                         for result in run.metrics.get("attacks", [])
                         if result["label"] == header.split(" #")[0]
                         and _attack_identity(result["attack"]) == _attack_identity(
                             column.attack)), None)
    for measure in table.measures:
        if measure.name == header:
            return next((finite_number(entry.get("value")) for entry in measure_entries(run)
                         if entry["label"] == header.split(" #")[0]
                         and measure_setting(entry) == measure.measure
                         and entry["key"] == measure.key),
                        None)
    return measure_value(run, header)


def _columns(runs: list[Run]) -> tuple[list[Column], dict[tuple[str, str], str]]:
    """Attack columns: one per label and parameter set (a label used for two attacks splits
    into ``PGD``, ``PGD #2``), and the column of each (label, parameters)."""
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
    return columns, column_of


def _measure_columns(
    runs: list[Run], taken: list[str]
) -> tuple[list[MeasureColumn], dict[tuple[str, str], str]]:
    """Measure columns, split like attack columns; a name already ``taken`` gets ``#2``."""
    found: list[MeasureColumn] = []
    column_of: dict[tuple[str, str], str] = {}
    for run in runs:
        for entry in measure_entries(run):
            ident = _measure_identity(entry)
            if ident in column_of:
                continue
            same = [n for n in [*taken, *(m.name for m in found)]
                    if n.split(" #")[0] == entry["label"]]
            name = entry["label"] if not same else f"{entry['label']} #{len(same) + 1}"
            column_of[ident] = name
            found.append(MeasureColumn(name, measure_setting(entry), entry["key"]))
    return found, column_of


def _measure_identity(entry: dict[str, Any]) -> tuple[str, str]:
    """What makes two measure results one column: label, parameters and headline key."""
    return entry["label"], json.dumps([measure_setting(entry), entry["key"]], sort_keys=True,
                                      default=str)


def _one_run_per_seed(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """The same experiment at the same seed given twice (a run and a sweep point, a copy)
    counts once: the run that finished last is kept (ties: the later path); a note says so."""
    by_seed: dict[int, list[Run]] = {}
    for run in runs:
        by_seed.setdefault(run.seed, []).append(run)
    kept, notes = [], []
    for seed, same in by_seed.items():
        same.sort(key=lambda r: (str(r.metrics.get("finished_at") or ""), str(r.path)))
        kept.append(same[-1])
        if len(same) > 1:
            others = ", ".join(str(r.path) for r in same[:-1])
            note = (f"{others} and {same[-1].path} are the same experiment and seed ({seed}); "
                    f"showing {same[-1].path} (finished last)")
            if len({_results(r) for r in same}) > 1:
                note += "; their results differ"
            notes.append(note)
    return kept, notes


def _results(run: Run) -> str:
    return json.dumps([run.metrics.get(k) for k in ("status", "natural", "attacks", "measures")],
                      sort_keys=True, default=str)


def _build_table(
    title: str, runs: list[Run], attack_metric: str | None, extras: list[str]
) -> Table:
    metric = runs[0].metrics["metric"]
    key = attack_metric or metric
    notes: list[str] = []
    columns, column_of = _columns(runs)
    measure_columns, measure_of = _measure_columns(runs, [c.name for c in columns])
    n_examples: dict[str, set[int]] = {}
    missing_key = False
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(json.dumps(identity(run), sort_keys=True, default=str), []).append(run)
    rows = []
    for members in groups.values():
        members, same = _one_run_per_seed(members)
        notes += same
        row = Row(run_label(members[0].metrics, members[0].config), members)
        for run in members:
            if run.diverged:
                continue
            values = run.metrics["natural"]
            row.values.setdefault(NATURAL, []).append(float(values[metric]))
            if finite_number(values.get("n_examples")) is not None:
                n_examples.setdefault(NATURAL, set()).add(int(values["n_examples"]))
            attacked = []
            for result in run.metrics.get("attacks", []):
                if key not in result or result[key] is None:
                    missing_key = True
                    continue
                name = column_of[(result["label"], _attack_identity(result["attack"]))]
                row.values.setdefault(name, []).append(float(result[key]))
                attacked.append(float(result[key]))
                if finite_number(result.get("n_examples")) is not None:
                    n_examples.setdefault(name, set()).add(int(result["n_examples"]))
                clean = finite_number(result.get(f"original_{metric}"))
                if clean is not None:
                    row.subset_natural.setdefault(name, []).append(clean)
            if attacked:
                row.values.setdefault(AVERAGE, []).append(sum(attacked) / len(attacked))
            for entry in measure_entries(run):
                if (value := finite_number(entry.get("value"))) is not None:
                    name = measure_of[_measure_identity(entry)]
                    row.values.setdefault(name, []).append(value)
            for extra in extras:
                if (value := extra_value(run, extra)) is not None:
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
                  [e for e in extras if any(e in r.values for r in rows)],
                  measures=[m for m in measure_columns if any(m.name in r.values for r in rows)],
                  n_examples={k: sorted(v) for k, v in n_examples.items()})
    partial = [r.label for r in rows
               if any(0 < len(r.values.get(c, [])) < len(r.seeds)
                      for c in [*(c.name for c in columns), *(m.name for m in table.measures)])]
    if partial:
        notes.append("rows with an attack or measure missing from some of their runs: "
                     + ", ".join(partial) + " (cells average the runs that have it; see n in CSV)")
    notes += _subset_notes(table)
    return table


def _subset_notes(table: Table) -> list[str]:
    """For each attack column evaluated on other examples than Natural: what it covers and,
    where its results report it (``original_<metric>``), the natural metric on those examples
    — the number to compare it with."""
    notes = []
    natural = "/".join(map(str, table.n_examples.get(NATURAL, []))) or "?"
    for column in table.columns:
        if table.title_of(column.name) == column.name:
            continue
        note = (f"{column.name} attacked {'/'.join(map(str, table.n_examples[column.name]))} "
                f"of the {natural} examples of Natural")
        clean = [f"{r.label} {cell(r.subset_natural[column.name], 1)}" for r in table.rows
                 if r.subset_natural.get(column.name)]
        if clean:
            note += (f"; {metric_title(table.metric)} on those examples before the attack "
                     f"('original_{table.metric}'): " + ", ".join(clean))
        notes.append(note)
    return notes


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
