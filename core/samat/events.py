"""The typed events a run sends to plugins (``samat_on_*`` hooks in :mod:`samat.hookspecs`).

Every event is a small frozen dataclass with the run directory, the optimisation ``step`` and
the ``epoch`` (1-based: the epoch under way, or the one just finished) it belongs to, and its
numbers in ``metrics`` (plain floats). Events fire on rank 0 only under torchrun.
:func:`scalars` flattens an event into the tag names the built-in loggers and ``metrics.csv``
use, so that every logger shows the same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    """A run (``samat run``) or an evaluation (``samat eval``, ``kind="eval"``) begins, or is
    resumed (``resumed``) at ``step``; ``config`` is the resolved recipe (``config.yaml``)."""

    run_dir: str
    config: Mapping[str, Any]
    step: int = 0
    epoch: int = 0
    total_steps: int = 0
    resumed: bool = False
    kind: str = "run"


@dataclass(frozen=True)
class StepLogged:
    """Training progress, every :data:`samat.train.LOG_EVERY` steps and at the end of each
    epoch (the progress bar's cadence): ``loss`` (the last step's), the task's train metric
    over the epoch so far, ``lr`` and ``steps_per_s``."""

    run_dir: str
    step: int
    epoch: int
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochEnded:
    """An epoch finished: its ``history.jsonl`` numbers (``train_loss``, ``train_<metric>``,
    ``lr``, ``train_time_s``, ...); the periodic evaluation follows as :class:`EvalResult`."""

    run_dir: str
    step: int
    epoch: int
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalResult:
    """One evaluation pass: ``label`` is ``natural`` or an attack's label; ``metrics`` its
    values (the task's metric and what the attack adds). ``final`` is the evaluation after
    training (or ``samat eval``'s), else a periodic one (``train.eval_every``)."""

    run_dir: str
    step: int
    epoch: int
    label: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    final: bool = True
    n_examples: int | None = None


@dataclass(frozen=True)
class RunEnded:
    """The run ended: ``status`` is ``finished``, ``diverged``, ``stopped`` (checkpointed on a
    signal; ``--resume`` continues) or ``failed``; ``metrics`` the ``metrics.json`` content
    (empty if none was written)."""

    run_dir: str
    step: int
    epoch: int
    status: str
    metrics: Mapping[str, Any] = field(default_factory=dict)


Event = RunStarted | StepLogged | EpochEnded | EvalResult | RunEnded


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The int and float entries of ``values`` as floats (booleans, None and the rest left
    out): what an event's ``metrics`` holds."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def scalars(event: StepLogged | EpochEnded | EvalResult) -> dict[str, float]:
    """The event's metrics under logger tag names: ``train/<key>`` (steps), ``epoch/<key>``,
    ``eval/<label>/<key>`` (periodic) and ``final/<label>/<key>`` (after training)."""
    if isinstance(event, EvalResult):
        prefix = f"{'final' if event.final else 'eval'}/{event.label}/"
    else:
        prefix = "train/" if isinstance(event, StepLogged) else "epoch/"
    return {prefix + k: v for k, v in event.metrics.items()}
