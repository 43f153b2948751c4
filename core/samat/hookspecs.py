"""The whole extension contract of samat.

A plugin is a module (or object) with functions named like the specs below, decorated with
``samat.hookimpl``, exposed through the ``samat`` entry-point group::

    [project.entry-points.samat]
    my_plugin = "my_package.plugin"

Each registration hook receives a ``register(name, factory, description="")`` callback.
Keep plugin modules import-light: import torch-heavy libraries inside the factories.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("samat")
hookimpl = pluggy.HookimplMarker("samat")

Register = Callable[..., None]


@hookspec
def samat_register_tasks(register: Register) -> None:
    """Register tasks: ``register(name, factory)``; ``factory(**params) -> samat.Task``."""


@hookspec
def samat_register_attacks(register: Register) -> None:
    """Register evaluation attacks: ``factory(model, loss_fn=None, **params) -> samat.Attack``."""


@hookspec
def samat_register_weight_perturbations(register: Register) -> None:
    """Register weight perturbations (SGD step, SAM, ASAM, ...).

    ``factory(params, base_optimizer_cls, base_kwargs, **params) -> samat.WeightPerturbation``.
    """


@hookspec
def samat_register_input_perturbations(register: Register) -> None:
    """Register training-time input perturbations (identity, PGD, FGSM, ...).

    ``factory(**params) -> samat.InputPerturbation``.
    """


@hookspec
def samat_on_result(metrics: dict[str, Any], run_dir: str) -> None:
    """Called once with the final ``metrics.json`` content after a run finishes."""


@hookspec
def samat_report_plots(runs: list[Any], out_dir: str) -> list[str] | None:
    """Draw task-specific PNG plots for ``samat report --out``; return the paths written.

    ``runs`` are :class:`samat.report.Run` objects (``path``, ``metrics``, ``config``) of every
    task; pick yours by ``run.metrics["task"]["name"]``. Draw with
    :func:`samat.plots.new_figure` / :func:`samat.plots.save` (matplotlib is then installed).
    """
