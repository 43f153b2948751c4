"""Entry point of the built-in §4 binary-model plugin (import-light: no torch here)."""

from __future__ import annotations

from samat.hookspecs import Register, hookimpl


@hookimpl
def samat_register_tasks(register: Register) -> None:
    register(
        "toy_duality",
        "samat_toy.task:ToyDualityTask",
        "The paper's section 4 binary model: one robust and n non-robust features, linear model",
    )
