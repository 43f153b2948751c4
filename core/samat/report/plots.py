"""PNG plots for ``samat report --out``: the clean-vs-robust trade-off and metric-vs-parameter
curves; plugins add task-specific plots through the ``samat_report_plots`` hook."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from samat.errors import SamatError
from samat.figures import new_figure, save_figure, wrap_title
from samat.plugins import call_report_plot_hooks
from samat.recipe import flatten
from samat.report.labels import metric_title
from samat.report.runs import Run
from samat.report.tables import AVERAGE, NATURAL, Row, Table, mean_std

_SHORT = re.compile(r"[\w.-]{1,32}")
"""A task parameter value that names the experiment in a file name (no paths, no prose)."""


def require_matplotlib() -> None:
    """Fail with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SamatError(
            "report --out draws PNG plots with matplotlib, which is not installed; "
            "pip install 'samat[report]' (or matplotlib)"
        ) from None


def slug(text: str) -> str:
    """A file-name fragment for ``text`` (``task (size=small)`` -> ``task_small``)."""
    text = re.sub(r"\b\w+=", "", text)
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")[:80] or "table"


def table_slug(table: Table) -> str:
    """``<task>_<value>_...``: the task name, then its parameters' short string values (by
    parameter name; numbers, paths and environment parameters left out)."""
    task = table.task or {"name": table.title}
    values = [v for k, v in sorted(task.items())
              if k != "name" and isinstance(v, str) and _SHORT.fullmatch(v)]
    return slug("_".join(map(str, [task.get("name"), *values])))


def colors(n: int) -> list[Any]:
    """``n`` distinct colours (tab10, or tab20 beyond 10)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def tradeoff(table: Table, path: Path) -> Path:
    """Natural metric (x) vs average under attack (y): one dot per run, one colour per row, the
    row mean as a large marker with ±1 std bars; reference rows as hollow squares."""
    fig = new_figure()
    ax = fig.add_subplot()
    for row, color in zip(table.rows, colors(len(table.rows)), strict=True):
        xs, ys = row.values.get(NATURAL, []), row.values.get(AVERAGE, [])
        if not xs or not ys:
            continue
        if row.reference:
            ax.scatter(xs, ys, marker="s", facecolors="none", edgecolors=[color], s=60,
                       label=f"{row.label} [{row.reference}]")
            continue
        if len(xs) == len(ys):
            ax.scatter(xs, ys, color=color, s=14, alpha=0.6)
        (mx, sx), (my, sy) = mean_std(xs), mean_std(ys)
        ax.errorbar(mx, my, xerr=sx or 0, yerr=sy or 0, fmt="o", color=color, ms=8,
                    mec="black", capsize=3, label=f"{row.label} (n={len(row.seeds)})")
    better = "higher" if table.higher_is_better else "lower"
    ax.set_xlabel(f"natural {metric_title(table.metric)} (higher is better)")
    ax.set_ylabel(f"average {metric_title(table.attack_metric)} under attack "
                  f"({better} is better)")
    ax.set_title(wrap_title(f"Clean vs robust: {table.title}", 6.4), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def curve(table: Table, key: str, path: Path) -> Path:
    """Natural metric and average under attack against the numeric config value ``key``:
    one line per configuration that differs only in ``key`` (and the seed), mean ± std over
    seeds; rows without ``key`` as dashed horizontal references."""
    lines: dict[str, dict[float, list[Row]]] = {}
    flat_rows = []
    for row in table.rows:
        if row.reference:
            continue
        value = flatten(row.runs[0].config).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            line = lines.setdefault(_line_name(row.label, key), {})
            line.setdefault(float(value), []).append(row)
        else:
            flat_rows.append(row)
    if not lines:
        raise SamatError(f"--curve {key}: no run in '{table.title}' has a numeric config value "
                         "there; e.g. --curve train.weight_perturbation.rho")
    fig = new_figure(10, 4.2)
    axes = fig.subplots(1, 2)
    palette = colors(len(lines) + len(flat_rows))
    for ax, column in zip(axes, (NATURAL, AVERAGE), strict=True):
        for (name, points), color in zip(lines.items(), palette, strict=False):
            xs = sorted(points)
            stats = [mean_std([v for r in points[x] for v in r.values.get(column, [])])
                     for x in xs]
            ax.errorbar(xs, [m for m, _ in stats], yerr=[s or 0 for _, s in stats], marker="o",
                        color=color, capsize=3, label=name)
        for row, color in zip(flat_rows, palette[len(lines):], strict=True):
            if row.values.get(column):
                ax.axhline(mean_std(row.values[column])[0], ls="--", color=color,
                           label=row.label)
        ax.set_xlabel(wrap_title(key, 5))
        ax.set_title(wrap_title(
            f"{column} ({table.attack_metric if column == AVERAGE else table.metric})", 5),
            fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(wrap_title(table.title, 10), fontsize=9)
    return save_figure(fig, path)


def _line_name(label: str, key: str) -> str:
    """A row label with the swept value removed (``SAM ρ=0.1`` -> ``SAM``)."""
    short = {"rho": "ρ", "eps": "ε"}.get(key.rsplit(".", 1)[-1], key.rsplit(".", 1)[-1])
    return re.sub(rf"\s*{re.escape(short)}=[^\s,)]+", "", label).strip() or label


def check_request(tables: list[Table], curves: list[str]) -> None:
    """Fail before anything is written: matplotlib missing, or a curve key no run has."""
    require_matplotlib()
    missing = [k for k in curves if not any(
        not r.reference and k in _flat_keys(r) for t in tables for r in t.rows)]
    if missing:
        raise SamatError(f"--curve {missing[0]}: no run has this config key; "
                         "use a dotted recipe key such as train.weight_perturbation.rho")


def plot_names(tables: list[Table]) -> list[str]:
    """Each table's part of its plots' file names: :func:`table_slug`, numbered when two
    tables would share one."""
    names: list[str] = []
    for table in tables:
        name = table_slug(table)
        names.append(name if name not in names else f"{name}_{len(names) + 1}")
    return names


def write_plots(runs: list[Run], tables: list[Table], out_dir: Path,
                curves: list[str]) -> list[Path]:
    """Every plot for ``tables`` (and the plugins' plots for ``runs``) into ``out_dir``."""
    check_request(tables, curves)
    written = []
    for table, name in zip(tables, plot_names(tables), strict=True):
        written.append(tradeoff(table, out_dir / f"tradeoff_{name}.png"))
        for key in curves:
            if any(not r.reference and key in _flat_keys(r) for r in table.rows):
                written.append(curve(table, key, out_dir / f"curve_{slug(key)}_{name}.png"))
    written += call_report_plot_hooks(runs, out_dir)
    return written


def _flat_keys(row: Row) -> set[str]:
    return set(flatten(row.runs[0].config))
