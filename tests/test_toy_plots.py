"""samat_toy.plots: the W_R-vs-ε report plot, reached through the samat_report_plots hook."""

from __future__ import annotations

from pathlib import Path

from report_fixtures import make_run

from samat.plugins import call_report_plot_hooks
from samat.report import Run, collect_runs
from samat_toy.plots import _method

TOY = {"name": "toy_duality", "p": 0.75, "eta": 0.3, "n": 30}
FACTS = {"p": 0.75, "eta": 0.3, "n_nonrobust": 30}


def test_methods_are_read_from_the_run() -> None:
    def run(weight=None, inp=None) -> Run:
        return Run(Path(), {}, {"train": {"weight_perturbation": weight or {"name": "none"},
                                          "input_perturbation": inp or {"name": "none"}}})

    assert _method(run()) == ("st", None)
    assert _method(run(inp={"name": "pgd", "norm": "linf", "eps": 0.0})) == ("st", None)
    assert _method(run(inp={"name": "pgd", "norm": "linf", "eps": 0.1})) == ("at", 0.1)
    assert _method(run(inp={"name": "pgd", "norm": "l2", "eps": 0.1})) == ("other", None)
    assert _method(run(weight={"name": "sam", "rho": 0.2})) == ("sam", 0.2)
    both = run({"name": "sam", "rho": 0.2}, {"name": "pgd", "norm": "linf", "eps": 0.1})
    assert _method(both) == ("other", None)


def test_wr_plot_through_the_hook(tmp_path: Path) -> None:
    for seed, wr in enumerate((0.061, 0.063)):
        make_run(tmp_path / f"st{seed}", seed=seed, natural=95, attacks={}, task=TOY,
                 task_facts=FACTS, report={"w_r": wr})
        make_run(tmp_path / f"at{seed}", seed=seed, natural=95, attacks={}, task=TOY,
                 task_facts=FACTS, report={"w_r": 0.09 + wr / 100},
                 inp={"name": "pgd", "norm": "linf", "eps": 0.1})
    make_run(tmp_path / "sam", natural=95, attacks={}, task=TOY, task_facts=FACTS,
             report={"w_r": 0.0615}, weight={"name": "sam", "rho": 0.1})
    make_run(tmp_path / "image", natural=95, attacks={})  # another task: ignored
    out = tmp_path / "out"
    out.mkdir()
    written = call_report_plot_hooks(collect_runs([tmp_path]), out)
    assert [p.name for p in written] == ["toy_wr_p0.75_eta0.3_n30.png"]
    assert written[0].read_bytes().startswith(b"\x89PNG") and written[0].stat().st_size > 10000
