"""``samat report --scatter MEASURE ATTACK``: a measure (e.g. sharpness) against the metric under
an attack over the runs of a table, one colour per method, with Spearman's rank correlation —
does flatness in weight space track robustness in input space?"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from samat.errors import SamatError
from samat.report.labels import metric_title, parameters
from samat.report.measures import measure_value_names
from samat.report.tables import AVERAGE, NATURAL, Table, column_value


@dataclass
class Scatter:
    """One table's runs as (method, measure, metric) points and their rank correlation."""

    table: Table
    measure: str  # a measure column, or a measure value as LABEL.KEY
    attack: str  # Natural, an attack column or Average
    points: list[tuple[str, float, float]]  # (row label, x, y), one per run
    spearman: float  # nan when undefined (fewer than 3 runs, constant values)
    pvalue: float

    def summary(self) -> str:
        """One line: what against what, the correlation and over how many runs."""
        n = len(self.points)
        if math.isnan(self.spearman):
            correlation = "undefined (fewer than 3 runs or a constant)"
        else:
            correlation = f"{self.spearman:+.3f} (p={self.pvalue:.2g})"
        return (f"scatter {self.measure} vs {self.attack} in {self.table.title}: Spearman rank "
                f"correlation {correlation}, n={n} run{'s' if n != 1 else ''}")


def scatters(tables: list[Table], requests: list[tuple[str, str]]) -> list[Scatter]:
    """For each (MEASURE, ATTACK) request, a :class:`Scatter` per table that has both; a
    request no table can answer fails with the measures and attacks there are."""
    found = []
    for measure, attack in requests:
        matched = [s for table in tables if (s := _scatter(table, measure, attack))]
        if not matched:
            raise SamatError(_unavailable(tables, measure, attack))
        found += matched
    return found


def _header(table: Table, attack: str) -> str | None:
    """The column ``attack`` names (``natural``/``average`` in any case, or an attack label)."""
    if attack.lower() in (NATURAL.lower(), AVERAGE.lower()):
        return NATURAL if attack.lower() == NATURAL.lower() else AVERAGE
    return attack if any(c.name == attack for c in table.columns) else None


def _scatter(table: Table, measure: str, attack: str) -> Scatter | None:
    header = _header(table, attack)
    if header is None:
        return None
    points = []
    for row in table.rows:
        if row.reference:
            continue
        for run in row.runs:
            x, y = column_value(table, run, measure), column_value(table, run, header)
            if x is not None and y is not None:
                points.append((row.label, x, y))
    if not points:
        return None
    spearman, pvalue = math.nan, math.nan
    if len(points) >= 3:
        from scipy.stats import spearmanr

        with warnings.catch_warnings():  # constant input: nan, said in the summary
            warnings.simplefilter("ignore")
            result = spearmanr([p[1] for p in points], [p[2] for p in points])
        spearman, pvalue = float(result.statistic), float(result.pvalue)
    return Scatter(table, measure, header, points, spearman, pvalue)


def _unavailable(tables: list[Table], measure: str, attack: str) -> str:
    runs = [r for t in tables for row in t.rows for r in row.runs]
    names = list(dict.fromkeys(m.name for t in tables for m in t.measures))
    names += [n for n in measure_value_names(runs) if n not in names]
    attacks = list(dict.fromkeys(["natural", "average", *(c.name for t in tables
                                                         for c in t.columns)]))
    return (f"--scatter {measure} {attack}: no table has both; measures: "
            f"{', '.join(names) or 'none (no run has measures in metrics.json)'}; attacks: "
            f"{', '.join(attacks)}")


def axis_label(table: Table, header: str) -> str:
    """What an axis shows: a measure with its parameters, or the metric under an attack."""
    for m in table.measures:
        if m.name == header:
            return f"{m.name}: {m.key}{parameters(m.measure)}"
    for c in table.columns:
        if c.name == header:
            return (f"{metric_title(table.attack_metric)} under {c.name}"
                    f"{parameters(c.attack, ('bounds', 'mask'))}")
    if header == NATURAL:
        return f"natural {metric_title(table.metric)}"
    if header == AVERAGE:
        return f"average {metric_title(table.attack_metric)} under attack"
    return header


def plot(scatter: Scatter, path: Path) -> Path:
    """The PNG: one colour per method, a legend, labelled axes, the correlation in the title."""
    from samat.figures import new_figure, save_figure, wrap_title
    from samat.report.plots import colors

    fig = new_figure()
    ax = fig.add_subplot()
    labels = list(dict.fromkeys(label for label, _, _ in scatter.points))
    for label, color in zip(labels, colors(len(labels)), strict=True):
        mine = [(x, y) for name, x, y in scatter.points if name == label]
        ax.scatter([x for x, _ in mine], [y for _, y in mine], color=color, s=30,
                   label=f"{label} (n={len(mine)})")
    ax.set_xlabel(wrap_title(axis_label(scatter.table, scatter.measure), 6.0))
    ax.set_ylabel(wrap_title(axis_label(scatter.table, scatter.attack), 4.4))
    title = scatter.summary().removeprefix("scatter ")
    ax.set_title(wrap_title(title, 6.4), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)
