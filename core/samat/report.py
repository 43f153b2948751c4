"""``samat report``: paper-style tables from finished run directories.

One table per task; one row per method/configuration (runs that differ only in the seed are
averaged: mean ± sample standard deviation); columns are the natural metric, each attack and
the average over attacks. Rendered as a terminal table, Markdown, CSV or LaTeX.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samat import results
from samat.errors import SamatError
from samat.recipe import flatten

LOWER_IS_BETTER = {"attack_success_rate"}
"""Attack-result keys where a lower value means a more robust model."""

METRIC_NAMES = {"accuracy": "accuracy", "miou": "mIoU",
                "attack_success_rate": "attack success rate"}

# Config keys that do not define a method: where data lives, bookkeeping, the seed.
IGNORED_KEYS = ("seed", "name", "description", "device", "output_dir", "task.root",
                "task.download", "task.seed", "train.num_workers", "train.eval_every",
                "train.checkpoint_every", "eval.batch_size", "eval.attacks")
NATURAL, AVERAGE = "Natural", "Average"


@dataclass
class Run:
    """A finished run directory: its metrics and resolved config."""

    path: Path
    metrics: dict[str, Any]
    config: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.metrics.get("seed", self.config.get("seed", 0)))

    @property
    def diverged(self) -> bool:
        """Stopped on a non-finite value: no results, left out of every mean."""
        return results.run_status(self.metrics) == results.DIVERGED


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
    reference: str | None = None  # set on rows quoted from a paper

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
        natural = f"{METRIC_NAMES.get(self.metric, self.metric)}, higher is better"
        if self.attack_metric == self.metric:
            better = "higher" if self.higher_is_better else "lower"
            return f"{METRIC_NAMES.get(self.metric, self.metric)}, {better} is better"
        lower = self.attack_metric in LOWER_IS_BETTER
        return (f"Natural: {natural}; attack columns and Average: "
                f"{METRIC_NAMES.get(self.attack_metric, self.attack_metric)}, "
                f"{'lower' if lower else 'higher'} is better")


# -- collecting ---------------------------------------------------------------------------------
def collect_runs(paths: list[str | Path]) -> list[Run]:
    """Every finished run (a directory with ``metrics.json``) at or below ``paths``."""
    found: dict[Path, Run] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SamatError(f"report: {path} does not exist; pass run or sweep directories")
        candidates = [path] if (path / results.METRICS).is_file() else sorted(
            p.parent for p in path.rglob(results.METRICS))
        for run_dir in candidates:
            found.setdefault(run_dir.resolve(), _load_run(run_dir))
    return list(found.values())


def _load_run(run_dir: Path) -> Run:
    try:
        metrics = json.loads((run_dir / results.METRICS).read_text())
        config = results.read_config(run_dir) if results.is_run_dir(run_dir) else {}
    except (OSError, ValueError) as exc:
        raise SamatError(f"report: cannot read {run_dir / results.METRICS}: {exc}") from None
    problem = _metrics_problem(metrics)
    if problem:
        raise SamatError(f"report: {run_dir / results.METRICS} is not a samat metrics file "
                         f"({problem}); delete that run directory or run it again")
    return Run(run_dir, metrics, config or {})


def _metrics_problem(metrics: Any) -> str | None:
    """What keeps ``metrics`` from being read as a ``metrics.json`` (None if nothing)."""
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if not isinstance(metrics, dict):
        return "not a JSON object"
    metric = metrics.get("metric")
    if not isinstance(metric, str) or "natural" not in metrics:
        return "no 'metric' or 'natural'"
    natural = metrics["natural"]
    if results.run_status(metrics) != results.DIVERGED and not (
            isinstance(natural, dict) and number(natural.get(metric))):
        return f"no number at natural.{metric}"
    attacks = metrics.get("attacks", [])
    if not isinstance(attacks, list) or not all(
            isinstance(a, dict) and isinstance(a.get("label"), str)
            and isinstance(a.get("attack"), dict) and (a.get(metric) is None or number(a[metric]))
            for a in attacks):
        return f"'attacks' is not a list of entries with 'label', 'attack' and a number at " \
               f"'{metric}'"
    for key in ("report", "task", "versions"):
        if not isinstance(metrics.get(key, {}), dict):
            return f"'{key}' is not a mapping"
    if "seed" in metrics and not number(metrics["seed"]):
        return "'seed' is not a number"
    return None


# -- labels -------------------------------------------------------------------------------------
def _identity(run: Run) -> dict[str, Any]:
    flat = flatten(run.config)
    return {k: v for k, v in flat.items()
            if not any(k == i or k.startswith(i + ".") for i in IGNORED_KEYS)}


def format_eps(eps: float) -> str:
    """``0.0313...`` -> ``8/255``; radii with a short decimal form (``0.1``) as ``%g``."""
    if repr(eps) == repr(float(f"{eps:.4g}")):
        return f"{eps:g}"
    if 0 < eps < 1:
        k = eps * 255
        if abs(k - round(k, 2)) < 1e-6:
            return f"{round(k, 2):g}/255"
    return f"{eps:g}"


NORMS = {"linf": "ℓ∞", "l2": "ℓ2", "l1": "ℓ1"}
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
METHOD_NAMES = {"looksam": "LookSAM"}  # others: the registered name in capitals (SAM, ESAM)
GREEK = {"alpha": "α", "beta": "β", "gamma": "γ"}


def perturbations(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's weight and input perturbation configs; one with radius 0 counts as ``none``."""
    train = config.get("train", {})
    found = []
    for key in ("weight_perturbation", "input_perturbation"):
        component = dict(train.get(key) or {"name": "none"})
        radius = component.get("eps", component.get("rho"))
        if isinstance(radius, int | float) and radius == 0:
            component = {"name": "none"}
        found.append(component)
    return found[0], found[1]


def method_label(config: dict[str, Any]) -> str:
    """``SGD``, ``Adam``, ``SAM ρ=0.1``, ``AT ℓ∞ ε=8/255``, ``SAM ρ=0.1 + AT ...``."""
    train = config.get("train", {})
    weight, inp = perturbations(config)
    parts = []
    if weight.get("name", "none") != "none":
        name = weight.pop("name")
        shown = [f"ρ={weight.pop('rho'):g}"] if "rho" in weight else []
        shown += [f"{GREEK.get(k, k)}={_short(v)}" for k, v in weight.items()
                  if k not in ("label", "adaptive")]
        parts.append(" ".join([weight.get("label") or METHOD_NAMES.get(name, name.upper()),
                               *shown]))
    if inp.get("name", "none") != "none":
        name = inp.get("name")
        norm = NORMS.get(str(inp.get("norm", "linf")), str(inp.get("norm")))
        eps = f" ε={format_eps(float(inp['eps']))}" if "eps" in inp else ""
        kind = "AT" if name == "pgd" else f"{str(name).upper()}-AT"
        parts.append(inp.get("label") or f"{kind} {norm}{eps}")
    if not parts:
        optimizer = (train.get("optimizer") or {}).get("name", "sgd")
        parts.append(OPTIMIZER_NAMES.get(optimizer, optimizer))
    return " + ".join(parts)


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _kind_rank(config: dict[str, Any]) -> int:
    weight_config, input_config = perturbations(config)
    weight, inp = weight_config["name"] != "none", input_config["name"] != "none"
    return {(False, False): 0, (True, False): 1, (False, True): 2, (True, True): 3}[
        (weight, inp)]


# -- tables -------------------------------------------------------------------------------------
def _task_key(run: Run) -> str:
    task = run.config.get("task") or {"name": run.metrics.get("task", {}).get("name", "?")}
    if isinstance(task, str):
        task = {"name": task}
    shown = {k: v for k, v in task.items() if k not in ("root", "download", "seed")}
    return json.dumps(shown, sort_keys=True, default=str)


def _task_title(key: str) -> str:
    task = json.loads(key)
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
        by_task.setdefault(_task_key(run), []).append(run)
    tables = []
    for key, task_runs in by_task.items():
        table = _build_table(_task_title(key), task_runs, attack_metric, list(extras))
        table.task = json.loads(key)
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
        groups.setdefault(json.dumps(_identity(run), sort_keys=True, default=str), []).append(run)
    rows = []
    for members in groups.values():
        row = Row(method_label(members[0].config), members)
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
    rows.sort(key=lambda r: (_kind_rank(r.runs[0].config), r.label != "SGD",
                             natural_key(r.label)))
    if missing_key:
        notes.append(f"some attack results have no '{key}' value; those cells are left out")
    if any(r.diverged_seeds for r in rows):
        notes.append("diverged: runs that stopped on a non-finite value (metrics.json status "
                     "diverged); they have no numbers and are left out of every mean")
    higher = bool(runs[0].metrics.get("higher_is_better", True))
    if key != metric:
        higher = key not in LOWER_IS_BETTER
    table = Table(title, metric, key, higher, columns, rows, notes,
                  [e for e in extras if any(e in r.values for r in rows)])
    partial = [r.label for r in rows
               if any(0 < len(r.values.get(c.name, [])) < len(r.seeds) for c in columns)]
    if partial:
        notes.append("rows with an attack missing from some of their runs: " + ", ".join(partial)
                     + " (cells average the runs that have it; see n in CSV)")
    return table


def natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers by value (``ρ=0.05`` before ``ρ=0.1``)."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text)
    return [(0, float(p)) if i % 2 else (1, p) for i, p in enumerate(parts)]


def _disambiguate(rows: list[Row]) -> None:
    """Append the differing config keys to rows whose method labels collide."""
    by_label: dict[str, list[Row]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    for same in by_label.values():
        if len(same) < 2:
            continue
        idents = [_identity(r.runs[0]) for r in same]
        keys = sorted({k for i in idents for k in i if any(j.get(k) != i.get(k) for j in idents)})
        for row, ident in zip(same, idents, strict=True):
            extra = ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(ident.get(k))}" for k in keys)
            row.label = f"{row.label} ({extra})"


# -- statistics ---------------------------------------------------------------------------------
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


# -- rendering ----------------------------------------------------------------------------------
def render(tables: list[Table], fmt: str = "text", decimals: int = 1) -> str:
    """All ``tables`` as ``text``, ``markdown``, ``csv`` or ``latex``."""
    renderers = {"text": _text, "markdown": _markdown, "csv": _csv, "latex": _latex}
    if fmt not in renderers:
        raise SamatError(f"--format: expected one of {', '.join(renderers)}, got {fmt!r}")
    if fmt == "csv":
        return _csv(tables)
    return "\n\n".join(renderers[fmt](t, decimals) for t in tables) + "\n"


def _seeds(row: Row) -> str:
    if row.reference:
        return row.reference
    seeds, diverged = row.seeds, row.diverged_seeds
    shown = f"{len(seeds)} ({', '.join(map(str, seeds))})" if seeds else "0"
    if diverged:
        shown += f" + {len(diverged)} diverged ({', '.join(map(str, diverged))})"
    return shown


def _legend(table: Table) -> list[str]:
    lines = []
    for c in table.columns:
        params = ", ".join(f"{k}={_param(k, v)}" for k, v in c.attack.items()
                           if k not in ("name", "bounds", "mask") and v is not None)
        lines.append(f"{c.name}: {c.attack.get('name')}" + (f" ({params})" if params else ""))
    n = sorted({r.metrics["natural"].get("n_examples") for row in table.rows for r in row.runs
                if not r.diverged and r.metrics["natural"].get("n_examples") is not None})
    if n:
        lines.append(f"evaluated on {', '.join(map(str, n))} examples")
    commits = sorted({_commit(r) for row in table.rows for r in row.runs})
    lines.append(f"samat commit(s): {', '.join(commits)}")
    return lines + table.notes


def _param(key: str, value: Any) -> str:
    if key in ("eps", "alpha") and isinstance(value, float):
        return format_eps(value)
    return _short(value)


def _commit(run: Run) -> str:
    git = (run.metrics.get("versions") or {}).get("samat_git") or {}
    if not git:
        return "unknown"
    return git["commit"][:10] + ("+dirty" if git.get("dirty") else "")


def _text(table: Table, decimals: int) -> str:
    rows = [[r.label, *(table.cell(r, h, decimals) for h in table.headers), _seeds(r)]
            for r in table.rows]
    body = results.format_table(["method", *table.headers, "seeds"], rows)
    return "\n".join([f"{table.title} — {table.direction()}", body, *_legend(table)])


def _markdown(table: Table, decimals: int) -> str:
    headers = ["method", *table.headers, "seeds"]
    lines = [f"**{table.title}** — {table.direction()}", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in table.rows:
        cells = [r.label, *(table.cell(r, h, decimals) for h in table.headers), _seeds(r)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {line}" for line in _legend(table)]
    return "\n".join(lines)


_LATEX_SPECIAL = {"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#"}
_LATEX = {"ρ": r"$\rho$", "ε": r"$\epsilon$", "ℓ∞": r"$\ell_\infty$", "ℓ2": r"$\ell_2$",
          "ℓ1": r"$\ell_1$", "β": r"$\beta$", "γ": r"$\gamma$", "α": r"$\alpha$", "—": "--",
          "±": r"$\pm$"}


def _tex(text: str) -> str:
    for raw, tex in [*_LATEX_SPECIAL.items(), *_LATEX.items()]:
        text = text.replace(raw, tex)
    return text


def _latex(table: Table, decimals: int) -> str:
    headers = ["Method", *table.headers]
    best = _best(table)
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{_tex(table.title)} ({_tex(table.direction())}); mean $\pm$ std over "
             r"seeds.}", r"\begin{tabular}{l" + "c" * (len(headers) - 1) + "}", r"\toprule",
             " & ".join(_tex(h) for h in headers) + r" \\", r"\midrule"]
    for r in table.rows:
        cells = [_tex(r.label)]
        for h in table.headers:
            text = table.cell(r, h, decimals, r" $\pm$ ")
            cells.append(rf"\textbf{{{text}}}" if best.get(h) is r else _tex(text))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _best(table: Table) -> dict[str, Row]:
    """The best user row per column (bold in LaTeX)."""
    best: dict[str, Row] = {}
    for h in table.headers:
        if h in table.extras:
            continue
        higher = table.higher_is_better if h != NATURAL else True
        scored = [(mean_std(r.values[h])[0], r) for r in table.rows
                  if r.values.get(h) and not r.reference]
        if scored:
            best[h] = (max if higher else min)(scored, key=lambda s: s[0])[1]
    return best


def _csv(tables: list[Table]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["table", "method", "column", "metric", "mean", "std", "n", "seeds",
                     "reference"])
    for t in tables:
        for r in t.rows:
            for h in t.headers:
                values = r.values.get(h)
                if not values:
                    continue
                mean, std = mean_std(values)
                metric = (t.metric if h == NATURAL else f"report.{h}" if h in t.extras
                          else t.attack_metric)
                writer.writerow([t.title, r.label, h, metric,
                                 repr(mean), "" if std is None else repr(std), len(values),
                                 " ".join(map(str, r.seeds)), r.reference or ""])
    return out.getvalue()


# -- the command ---------------------------------------------------------------------------------
def sweep_axes(paths: list[str | Path]) -> list[str]:
    """Numeric grid axes (other than the seed) of the sweeps at ``paths``: plotted as curves."""
    from samat.recipe import normalize
    from samat.sweep import MANIFEST

    axes: list[str] = []
    for path in map(Path, paths):
        manifest = path / MANIFEST
        if not manifest.is_file():
            continue
        grid = normalize(json.loads(manifest.read_text()).get("grid", {}))
        for key, values in grid.items():
            if key != "seed" and key not in axes and all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                axes.append(key)
    return axes


def write_report(
    paths: list[str | Path],
    fmt: str = "text",
    attack_metric: str | None = None,
    decimals: int = 1,
    out: str | Path | None = None,
    curves: list[str] = (),
    against: str | None = None,
    extras: list[str] = (),
) -> str:
    """The report of every finished run under ``paths`` in ``fmt``; with ``out``, also
    ``report.{txt,md,csv,tex}`` and PNG plots written there (their paths are listed)."""
    runs = collect_runs(list(paths))
    if not runs:
        raise SamatError(
            f"report: no finished run (a directory with {results.METRICS}) under "
            f"{', '.join(map(str, paths))}; a run writes it when its evaluation ends"
        )
    if decimals < 0:
        raise SamatError(f"--decimals: must be >= 0, got {decimals}")
    tables = build_tables(runs, attack_metric, list(extras))
    curves = [*curves, *(k for k in sweep_axes(paths) if k not in curves)]
    if against == "paper":
        from samat.paper import add_paper_rows

        for table in tables:
            add_paper_rows(table)
    text = render(tables, fmt, decimals)
    if out is None:
        return text
    from samat.plots import check_request, write_plots

    check_request(tables, list(curves))
    out_dir = Path(out)
    results.check_output_dir(out_dir, "--out")
    results.make_dirs(out_dir, "--out")
    written = []
    for ext, form in (("txt", "text"), ("md", "markdown"), ("csv", "csv"), ("tex", "latex")):
        path = out_dir / f"report.{ext}"
        path.write_text(render(tables, form, decimals))
        written.append(path)
    written += write_plots([r for r in runs if not r.diverged], tables, out_dir, list(curves))
    return text + "\n" + "\n".join(f"wrote {p}" for p in written) + "\n"
