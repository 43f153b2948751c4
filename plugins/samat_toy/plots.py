"""The §4 model's report plot: trained W_R against ε beside the closed forms and exact optima."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TASK = "toy_duality"


def _method(run: Any) -> tuple[str, float | None]:
    """``("st", None)``, ``("at", eps)`` or ``("sam", rho)`` for a :class:`samat.ReportRun`;
    ``("other", None)`` for runs that combine both or use another perturbation."""
    weight, inp = run.weight_perturbation, run.input_perturbation  # a zero radius is none
    at = inp["name"] != "none" and "eps" in inp
    sam = weight["name"] in ("sam", "asam")
    if at and not sam and inp.get("norm", "linf") == "linf":
        return "at", float(inp["eps"])
    if sam and not at:
        return "sam", float(weight["rho"])
    if not at and weight["name"] == "none":
        return "st", None
    return "other", None


def wr_plot(runs: list[Any], out_dir: Path) -> list[Path]:
    """One ``toy_wr_p<p>_eta<eta>_n<n>.png`` per distribution found among ``runs``."""
    groups: dict[tuple[float, float, int], list[Any]] = {}
    for run in runs:
        task = run.metrics.get("task", {})
        if task.get("name") != TASK or "w_r" not in run.metrics.get("report", {}):
            continue
        groups.setdefault((task["p"], task["eta"], task["n_nonrobust"]), []).append(run)
    return [_plot(key, members, out_dir) for key, members in groups.items()]


def _plot(key: tuple[float, float, int], runs: list[Any], out_dir: Path) -> Path:
    import numpy as np

    from samat import new_figure, save_figure
    from samat_toy import theory

    p, eta, n = key
    fig = new_figure(7, 4.8)
    ax = fig.add_subplot()
    eps = np.linspace(0.0, 0.8 * eta, 41)
    ax.axhline(theory.wr_standard_closed(p, eta, n), color="gray", lw=1,
               label="ST: Thm 4.1 closed form")
    ax.plot(eps, [theory.wr_at_closed(p, eta, n, e) for e in eps], color="C1",
            label="AT: Thm 4.2 closed form")
    ax.plot(eps, [theory.wr_sam_approx(p, eta, n, e) for e in eps], color="C2", ls=":",
            label="SAM: Thm 4.4 approximation (paper)")
    ax.plot(eps[1:], [theory.wr_sam(p, eta, n, e) for e in eps[1:]], color="C2", ls="--",
            label="SAM: exact optimum (radius ε on w1)")
    found: dict[tuple[str, float | None], list[float]] = {}
    for run in runs:
        method, x = _method(run)
        found.setdefault((method, x), []).append(float(run.metrics["report"]["w_r"]))
    st = found.pop(("st", None), None)
    if st:
        ax.axhspan(min(st), max(st), color="gray", alpha=0.2,
                   label=f"ST trained (range over {len(st)} runs)")
    for method, color, marker in (("at", "C1", "o"), ("sam", "C2", "s")):
        points = sorted((x, v) for (m, x), v in found.items() if m == method)
        if points:
            ax.errorbar([x for x, _ in points], [float(np.mean(v)) for _, v in points],
                        yerr=[float(np.std(v, ddof=1)) if len(v) > 1 else 0 for _, v in points],
                        fmt=marker, color=color, mec="black", capsize=3,
                        label=f"{method.upper()} trained (x = {'ε' if method == 'at' else 'ρ'})")
    ax.set_xlabel("ε (AT: input budget; SAM: weight radius)")
    ax.set_ylabel("W_R = w1 / (w2 + … + w_{n+1})")
    ax.set_title(f"§4 model, p={p}, η={eta}, n={n}: robust-feature weight", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return save_figure(fig, out_dir / f"toy_wr_p{p:g}_eta{eta:g}_n{n}.png")
