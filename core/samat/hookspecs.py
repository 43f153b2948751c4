"""The whole extension contract of samat: every hook a plugin may implement, the callbacks it
is handed, and the keyword arguments samat passes to the factories it registers.

A plugin is a module (or object) with functions named like the specs below, decorated with
``samat.hookimpl``, exposed through the ``samat`` entry-point group::

    [project.entry-points.samat]
    my_plugin = "my_package.plugin"

Keep plugin modules import-light: register factories as ``"module:attribute"`` paths (imported
only when used) and import torch-heavy libraries inside the factories. A plugin uses only names
exported by the top-level ``samat`` package (``from samat import Task, hookimpl, ...``).

**What samat passes to factories.** A factory's parameters come from the recipe (``name`` plus
the rest of the mapping); samat adds these when the factory's signature has them and the recipe
did not set them:

============================  ===============================================================
hook                          factory call
============================  ===============================================================
``samat_register_tasks``      ``factory(**params, seed=<run seed>)`` -> :class:`samat.Task`
``samat_register_attacks``    ``factory(model, loss_fn=task.loss, bounds=task.input_bounds,
                              mask=task.input_mask(), **params)`` -> :class:`samat.Attack`
                              (or :class:`samat.TextAttack`)
``samat_register_input_...``  ``factory(bounds=task.input_bounds, mask=task.input_mask(),
                              **params)`` -> :class:`samat.InputPerturbation`
``samat_register_weight_...`` ``factory(model_params, base_optimizer_cls, base_kwargs,
                              task=task, **params)`` -> :class:`samat.WeightPerturbation`
``samat_register_measures``   ``factory(**params, seed=<run seed>)`` -> :class:`samat.Measure`
``samat_register_loggers``    ``factory(**options)`` -> a logger: an object whose methods
                              are ``samat_on_*`` event hooks (decorated with ``hookimpl``)
============================  ===============================================================

**Events.** A run sends typed events (:mod:`samat.events`: :class:`samat.RunStarted`,
:class:`samat.StepLogged`, :class:`samat.EpochEnded`, :class:`samat.EvalResult`,
:class:`samat.RunEnded`) to the ``samat_on_*`` hooks of every plugin that implements them, and
to the loggers the recipe's ``logging:`` list names (docs/tracking.md). They fire on rank 0 only;
a hook that raises is logged (once per hook and plugin), never fatal.

A task's ``model_builder`` (``register(..., model_builder=...)``) is called as
``model_builder(**spec["architecture"])`` to rebuild an exported model without data
(:meth:`samat.Task.model_spec`, docs/models.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:  # the events are plain data (samat.events); annotations only
    from samat.events import EpochEnded, EvalResult, RunEnded, RunStarted, StepLogged

hookspec = pluggy.HookspecMarker("samat")
hookimpl = pluggy.HookimplMarker("samat")


class Register(Protocol):
    """The callback every ``samat_register_*`` factory hook receives."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        description: str = "",
        *,
        example: Mapping[str, Any] | None = None,
        label: str | None = None,
        environment: tuple[str, ...] = (),
        model_builder: Callable[..., Any] | str | None = None,
    ) -> None:
        """Register ``factory`` (a callable or a lazy ``"module:attribute"`` path) as ``name``.

        - ``description``: one line for ``samat list`` (default: the factory's docstring).
        - ``example``: parameters that build a small, fast instance; the contract tests build
          every registered entry with them (default: no parameters).
        - ``label``: how reports name a method trained with this perturbation (``AT``,
          ``LookSAM``; default: the name in capitals, followed by ``-AT`` for an input
          perturbation).
        - ``environment``: task parameters that say where or how to get the data, not what the
          experiment is (``root``, ``download``); reports group runs ignoring them.
        - ``model_builder`` (tasks; a callable or lazy path): builds the task's model from an
          exported ``model.json`` without the data or the network, as
          ``model_builder(**spec["architecture"])`` (:meth:`samat.Task.model_spec`) with random
          weights that samat then loads, or, for a task whose ``model_format`` is not
          ``safetensors``, ``model_builder(pretrained=<directory>, **spec["architecture"])``
          with the weights of the directory :meth:`samat.Task.save_pretrained` wrote.
        """


class RegisterMetric(Protocol):
    """The callback ``samat_register_metrics`` receives."""

    def __call__(self, name: str, label: str, *, higher_is_better: bool = True) -> None:
        """Declare the result key ``name`` (a task's natural metric or an attack result such
        as ``attack_success_rate``): how reports title it and which direction is better."""


@hookspec
def samat_register_tasks(register: Register) -> None:
    """Register tasks; the factory returns a :class:`samat.Task`."""


@hookspec
def samat_register_attacks(register: Register) -> None:
    """Register evaluation attacks; the factory returns a :class:`samat.Attack` bound to the
    model (or a :class:`samat.TextAttack`, which attacks raw texts). Its ``check(probe)`` is
    called before training: raise :class:`samat.AttackMismatch` there for a parameter (e.g.
    ``n_classes``) or input the model does not fit."""


@hookspec
def samat_register_weight_perturbations(register: Register) -> None:
    """Register weight perturbations (plain step, SAM, ...); the factory returns a
    :class:`samat.WeightPerturbation` over the given base optimizer."""


@hookspec
def samat_register_input_perturbations(register: Register) -> None:
    """Register training-time input perturbations (identity, PGD, ...); the factory returns a
    :class:`samat.InputPerturbation`."""


@hookspec
def samat_register_measures(register: Register) -> None:
    """Register measures of a trained model (weight-space sharpness, Hessian spectrum, input
    gradient norm, ...); the factory returns a :class:`samat.Measure`. They run after training
    (``eval.measures``) and after ``samat eval``; their values go into ``metrics.json`` under
    ``measures`` and into ``samat report`` as columns."""


@hookspec
def samat_register_metrics(register: RegisterMetric) -> None:
    """Declare the result keys a plugin's tasks and attacks report (titles, directions)."""


@hookspec
def samat_reference_results() -> list[dict[str, Any]] | None:
    """Published numbers that ``samat report --against paper`` shows beside matching runs:
    a list of tables, each ``{"ref", "task", "metric", "columns", "order", "rows"}`` and
    optionally ``"note"`` (the format is documented in docs/reporting.md)."""


@hookspec
def samat_on_result(metrics: dict[str, Any], run_dir: str) -> None:
    """Called once with the final ``metrics.json`` content after a run finishes."""


@hookspec
def samat_register_loggers(register: Register) -> None:
    """Register experiment loggers, selected by name in the recipe's ``logging:`` list (options
    beside the name). ``factory(**options)`` runs before anything is written: it checks the
    options and that its library is installed (else a :class:`samat.SamatError` saying which
    ``pip install`` adds it) and returns an object with ``samat_on_*`` hook methods, decorated
    with :data:`samat.hookimpl`, that receive the run's events. Write files only from
    :func:`samat_on_run_started` on (``event.run_dir``), and print at most one line."""


@hookspec
def samat_on_run_started(event: RunStarted) -> None:
    """A run or ``samat eval`` starts (or resumes) in ``event.run_dir``."""


@hookspec
def samat_on_step_logged(event: StepLogged) -> None:
    """Training progress every few steps (the progress bar's cadence)."""


@hookspec
def samat_on_epoch_ended(event: EpochEnded) -> None:
    """An epoch finished (its ``history.jsonl`` numbers)."""


@hookspec
def samat_on_eval_result(event: EvalResult) -> None:
    """An evaluation pass finished: natural or one attack, periodic or final."""


@hookspec
def samat_on_run_ended(event: RunEnded) -> None:
    """The run ended (finished, diverged, stopped or failed); flush and close here."""


@hookspec
def samat_report_plots(runs: list[Any], out_dir: str) -> list[str] | None:
    """Draw task-specific PNG plots for ``samat report --out``; return the paths written.

    ``runs`` are :class:`samat.ReportRun` objects (``path``, ``metrics``, ``config``,
    ``weight_perturbation``, ``input_perturbation``) of every task; pick yours by
    ``run.metrics["task"]["name"]``. Draw with :func:`samat.new_figure` /
    :func:`samat.save_figure` (matplotlib is then installed).
    """
