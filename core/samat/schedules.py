"""Learning-rate schedules stepped once per iteration: constant, step decay, cosine, poly."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import torch

from samat.recipe import Schedule


def lr_factor(schedule: Schedule, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr at iteration ``step`` (0-based).

    ``step``: ``gamma`` to the number of milestones (in epochs) already passed — the paper's
    "divide by 10 at epochs 75 and 90". ``cosine`` and ``poly`` go from 1 to 0 over
    ``total_steps``; :func:`build_scheduler` lifts that floor to ``min_lr``.
    """
    name = schedule.name
    if name == "constant":
        return lambda step: 1.0
    if name == "step":
        bounds = [round(m * steps_per_epoch) for m in schedule.milestones]
        return lambda step: schedule.gamma ** bisect.bisect_right(bounds, step)
    if name == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if name == "poly":
        return lambda step: (1 - min(step, total_steps) / total_steps) ** schedule.power
    raise ValueError(f"unknown schedule {name!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` implementing ``schedule`` (decaying towards ``schedule.min_lr``)."""
    factor = lr_factor(schedule, total_steps, steps_per_epoch)
    lambdas = []
    for group in optimizer.param_groups:
        base = group.get("initial_lr", group["lr"])
        floor = min(schedule.min_lr / base, 1.0) if base > 0 else 0.0
        decays = schedule.name in ("cosine", "poly")
        lambdas.append(
            (lambda step, f=floor: f + (1 - f) * factor(step)) if decays else factor
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
