"""``samat report``: paper-style tables and plots from finished run directories.

One table per task; one row per method/configuration (runs that differ only in the seed are
averaged: mean ± sample standard deviation); columns are the natural metric, each attack and
the average over attacks, then each measure. Rendered as a terminal table, Markdown, CSV or
LaTeX.

Modules: :mod:`~samat.report.runs` (reading run directories), :mod:`~samat.report.measures`
(their sharpness and other measures), :mod:`~samat.report.labels` (naming methods and metrics),
:mod:`~samat.report.tables` (grouping and statistics), :mod:`~samat.report.render` (the
formats), :mod:`~samat.report.references` (published numbers beside matching rows),
:mod:`~samat.report.plots` (PNGs, matplotlib imported only there),
:mod:`~samat.report.scatter` (a measure against robustness, rank-correlated) and
:mod:`~samat.report.write` (the command).
"""

from __future__ import annotations

from samat.report.labels import format_eps, method_label, metric_title, natural_key
from samat.report.references import add_reference_rows, reference_tables
from samat.report.render import render
from samat.report.runs import Run, collect_runs, sweep_axes
from samat.report.tables import AVERAGE, NATURAL, Column, Row, Table, build_tables, mean_std
from samat.report.write import write_report

__all__ = ["AVERAGE", "NATURAL", "Column", "Row", "Run", "Table", "add_reference_rows",
           "build_tables", "collect_runs", "format_eps", "mean_std", "method_label",
           "metric_title", "natural_key", "reference_tables", "render", "sweep_axes",
           "write_report"]
