"""Entry point of the built-in §4 binary-model plugin (import-light: no torch here)."""

from __future__ import annotations

from typing import Any

from samat import Register, hookimpl


@hookimpl
def samat_register_tasks(register: Register) -> None:
    register(
        "toy_duality",
        "samat_toy.task:ToyDualityTask",
        "The paper's section 4 binary model: one robust and n non-robust features, linear model",
        example={"n": 4, "n_train": 64, "n_test": 64, "theory_eps": [0.1]},
        model_builder="samat_toy.task:SignScoreLinear",
    )


@hookimpl
def samat_report_plots(runs: list[Any], out_dir: str) -> list[str]:
    """W_R vs ε for the §4 model's runs, beside the theory."""
    from pathlib import Path

    from samat_toy.plots import wr_plot

    return [str(p) for p in wr_plot(runs, Path(out_dir))]
