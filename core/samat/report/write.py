"""``samat report``: the tables of every finished run under some paths, printed and, with
``--out``, written as ``report.{txt,md,csv,tex}`` beside the plots."""

from __future__ import annotations

from pathlib import Path

from samat import results
from samat.errors import SamatError
from samat.report.references import add_reference_rows
from samat.report.render import render
from samat.report.runs import collect_runs, sweep_axes
from samat.report.scatter import Scatter, scatters
from samat.report.tables import build_tables

FILES = (("txt", "text"), ("md", "markdown"), ("csv", "csv"), ("tex", "latex"))
"""``--out`` file extensions and the format written in each."""


def write_report(
    paths: list[str | Path],
    fmt: str = "text",
    attack_metric: str | None = None,
    decimals: int = 1,
    out: str | Path | None = None,
    curves: list[str] = (),
    against: str | None = None,
    extras: list[str] = (),
    scatter: list[tuple[str, str]] = (),
) -> str:
    """The report of every finished run under ``paths`` in ``fmt``; with ``out``, also
    ``report.{txt,md,csv,tex}`` and PNG plots written there (their paths are listed).
    ``scatter``: (MEASURE, ATTACK) pairs whose rank correlation over the runs is printed (and,
    with ``out``, plotted)."""
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
        add_reference_rows(tables)
    found = scatters(tables, [tuple(pair) for pair in scatter])
    text = _with_correlations(render(tables, fmt, decimals), fmt, found)
    if out is None:
        return text
    from samat.report.plots import check_request, plot_names, slug, write_plots
    from samat.report.scatter import plot

    check_request(tables, list(curves))
    out_dir = Path(out)
    results.check_output_dir(out_dir, "--out")
    results.make_dirs(out_dir, "--out")
    written = []
    for ext, form in FILES:
        path = out_dir / f"report.{ext}"
        path.write_text(_with_correlations(render(tables, form, decimals), form, found))
        written.append(path)
    written += write_plots([r for r in runs if not r.diverged], tables, out_dir, list(curves))
    name_of = {id(t): name for t, name in zip(tables, plot_names(tables), strict=True)}
    written += [plot(s, out_dir / f"scatter_{slug(s.measure)}_{slug(s.attack)}_"
                        f"{name_of[id(s.table)]}.png") for s in found]
    return text + "\n" + "\n".join(f"wrote {p}" for p in written) + "\n"


def _with_correlations(text: str, fmt: str, found: list[Scatter]) -> str:
    """``text`` followed by each scatter's correlation line (LaTeX: as comments; the CSV is
    left a table)."""
    prefix = {"latex": "% ", "markdown": "- "}.get(fmt, "")
    if fmt == "csv" or not found:
        return text
    return text + "\n" + "".join(f"{prefix}{s.summary()}\n" for s in found)
