"""Tables as text (the terminal), Markdown, long-form CSV or booktabs LaTeX."""

from __future__ import annotations

import csv
import io
import textwrap

from samat import results
from samat.errors import SamatError
from samat.report.labels import parameters
from samat.report.measures import (
    finite_number,
    measure_entries,
    measure_examples,
    measure_setting,
)
from samat.report.runs import Run
from samat.report.tables import NATURAL, Row, Table, mean_std

WIDTH = 100
"""Lines under the tables are wrapped at this many columns (continuations indented)."""


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
    """One line per attack and measure column (its parameters and, where they differ from
    Natural's, examples), the examples evaluated, the commits, then the table's notes."""
    lines = []
    for c in table.columns:
        line = f"{c.name}: {c.attack.get('name')}" + parameters(c.attack, ("bounds", "mask"))
        if table.title_of(c.name) != c.name:
            line += f", on {'/'.join(map(str, table.n_examples[c.name]))} examples"
        lines.append(line)
    for m in table.measures:
        n = sorted({k for row in table.rows for r in row.runs for e in measure_entries(r)
                    if (e["label"], measure_setting(e), e["key"]) == (m.name.split(" #")[0],
                                                                      m.measure, m.key)
                    and (k := measure_examples(e))})
        lines.append(f"{m.name}: measure {m.measure.get('name')}"
                     + parameters(m.measure, ("n_examples",)) + f", value '{m.key}'"
                     + (f", on {'/'.join(map(str, n))} examples" if n else ""))
    n = sorted({r.metrics["natural"].get("n_examples") for row in table.rows for r in row.runs
                if not r.diverged and r.metrics["natural"].get("n_examples") is not None})
    if n:
        lines.append(f"evaluated on {', '.join(map(str, n))} examples")
    commits = sorted({_commit(r) for row in table.rows for r in row.runs})
    lines.append(f"samat commit(s): {', '.join(commits)}")
    return lines + table.notes


def _wrapped(lines: list[str], first: str, indent: str) -> list[str]:
    """``lines`` wrapped at :data:`WIDTH`, each started with ``first``, continued with
    ``indent`` (words never broken: a long value stays whole)."""
    return [part for line in lines for part in textwrap.wrap(
        line, WIDTH, initial_indent=first, subsequent_indent=indent, break_long_words=False,
        break_on_hyphens=False)]


def _commit(run: Run) -> str:
    git = (run.metrics.get("versions") or {}).get("samat_git") or {}
    if not git:
        return "unknown"
    return git["commit"][:10] + ("+dirty" if git.get("dirty") else "")


def _text(table: Table, decimals: int) -> str:
    rows = [[r.label, *(table.cell(r, h, decimals) for h in table.headers), _seeds(r)]
            for r in table.rows]
    body = results.format_table(["method", *map(table.title_of, table.headers), "seeds"], rows)
    return "\n".join([f"{table.title} — {table.direction()}", body,
                      *_wrapped(_legend(table), "", "    ")])


def _markdown(table: Table, decimals: int) -> str:
    headers = ["method", *map(table.title_of, table.headers), "seeds"]
    lines = [f"**{table.title}** — {table.direction()}", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in table.rows:
        cells = [r.label, *(table.cell(r, h, decimals) for h in table.headers), _seeds(r)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += _wrapped(_legend(table), "- ", "  ")
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
    headers = ["Method", *map(table.title_of, table.headers)]
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
        if table.unranked(h):
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
                metric = (t.metric if h == NATURAL else _extra_metric(r, h) if h in t.extras
                          else next((f"measures.{m.name}.{m.key}" for m in t.measures
                                     if m.name == h), t.attack_metric))
                writer.writerow([t.title, r.label, h, metric,
                                 repr(mean), "" if std is None else repr(std), len(values),
                                 " ".join(map(str, r.seeds)), r.reference or ""])
    return out.getvalue()


def _extra_metric(row: Row, key: str) -> str:
    """Where an ``--extra`` column's numbers come from: ``report.KEY`` or ``measures.LABEL.KEY``."""
    reported = any(finite_number(r.metrics.get("report", {}).get(key)) is not None
                   for r in row.runs)
    return f"report.{key}" if reported else f"measures.{key}"
