"""``sam_sharpness``: the worst-case loss increase in a ball of weight perturbations,
``max_{||eps|| <= rho} L(w + eps) - L(w)``, found by projected gradient ascent (Foret et al.
2021; the adaptive ball of ASAM, Kwon et al. 2021)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from samat.checks import check_int, check_number
from samat.interfaces import Task
from samat.measures.common import (
    Batch,
    NamedMeasure,
    check_finite_values,
    evaluating,
    finite,
    mean_loss,
    n_items,
    trainable,
    weights,
)


@dataclass
class Ascent:
    """What :func:`worst_case` found on one group of batches."""

    loss: float
    """``L(w)``."""
    perturbed_loss: float
    """``L(w + eps)`` at the best iterate (the largest loss the ascent reached)."""
    epsilon: list[Tensor]
    """The best iterate ``eps``, one tensor per parameter."""
    epsilon_norm: float
    """Its norm in the ball's metric: ``||eps||``, or ``||T^-1 eps||`` in the adaptive ball."""
    forward_backward_passes: int
    forward_passes: int


def _loss_and_grads(model: nn.Module, task: Task, params: list[nn.Parameter],
                    batches: Sequence[Batch], with_grads: bool) -> tuple[float, list[Tensor]]:
    """``L`` over ``batches`` (example-weighted mean) and, ``with_grads``, its gradient,
    accumulated one batch's graph at a time."""
    total = 0.0
    grads = [torch.zeros_like(p) for p in params] if with_grads else []
    for batch, weight in zip(batches, weights(batches), strict=True):
        if not with_grads:
            with torch.no_grad():
                total += float(mean_loss(model, task, batch, weight))
            continue
        loss = mean_loss(model, task, batch, weight)
        total += float(loss.detach())
        for acc, g in zip(grads, torch.autograd.grad(loss, params, allow_unused=True),
                          strict=True):
            if g is not None:
                acc += g
    return total, grads


def _norm(tensors: Sequence[Tensor]) -> float:
    return float(torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t, dtype=torch.float64) for t in tensors])))


def worst_case(model: nn.Module, task: Task, params: list[nn.Parameter],
               batches: Sequence[Batch], rho: float, steps: int, step_size: float,
               scale: list[Tensor] | None = None) -> Ascent:
    """``max_{||T^-1 eps|| <= rho} L(w + eps)`` over the perturbations ``eps`` of ``params``
    (``T = diag(scale)``; ``scale=None``: the identity, the l2 ball) by ``steps`` projected
    ascent steps in ``delta = T^-1 eps`` from ``delta = 0``:
    ``delta <- P(delta + step_size * T g / ||T g||)``, ``g = grad L(w + T delta)``,
    ``P`` the projection onto the ball. With ``step_size >= rho`` the first step is SAM's
    ``eps = rho g / ||g||`` (ASAM's ``rho T^2 g / ||T g||``). ``L`` is the example-weighted mean
    of ``task.loss`` over ``batches`` with one ``eps`` for all of them. The weights are copied
    back exactly before returning (also on errors)."""
    saved = [p.detach().clone() for p in params]
    delta = [torch.zeros_like(p) for p in params]

    def epsilon() -> list[Tensor]:
        return [d * s for d, s in zip(delta, scale, strict=True)] if scale else \
            [d.clone() for d in delta]

    best: tuple[float, list[Tensor], float] | None = None
    loss0 = 0.0
    try:
        for step in range(steps + 1):
            loss, grads = _loss_and_grads(model, task, params, batches, step < steps)
            if step == 0:
                loss0 = loss
            elif best is None or loss > best[0]:
                best = (loss, epsilon(), _norm(delta))
            if step == steps:
                break
            ascent = [g * s for g, s in zip(grads, scale, strict=True)] if scale else grads
            size = _norm(ascent)
            finite("the gradient norm", size)
            if size > 0:
                for d, a in zip(delta, ascent, strict=True):
                    d.add_(a, alpha=step_size / size)
                length = _norm(delta)
                if length > rho:
                    for d in delta:
                        d.mul_(rho / length)
            with torch.no_grad():
                for p, w, e in zip(params, saved, epsilon(), strict=True):
                    p.copy_(w + e)
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved, strict=True):
                p.copy_(w)
    assert best is not None
    return Ascent(loss0, best[0], best[1], best[2], steps * len(batches), len(batches))


class SAMSharpness(NamedMeasure):
    """Worst-case loss increase in a ball of radius ``rho`` around the weights, by ``steps``
    projected normalised-gradient ascent steps of size ``step_size`` (default ``rho``: the
    first step is SAM's own ``eps = rho g/||g||``); ``adaptive``: ASAM's ball
    ``||T^-1 eps|| <= rho``, ``T = |w| + eta``; ``m``: m-sharpness, the maximum taken per group
    of ``m`` examples and averaged over the groups (``n_examples`` a multiple of ``m``).
    Perturbs every trainable parameter (biases and BatchNorm's included, as SAM does)."""

    name = "sam_sharpness"
    key = "sharpness"

    def __init__(self, rho: float = 0.05, steps: int = 1, step_size: float | None = None,
                 adaptive: bool = False, eta: float = 0.01, m: int | None = None,
                 n_examples: int = 256, batch_size: int | None = None, seed: int = 0) -> None:
        self.rho = check_number("rho", rho, minimum=0, strict_min=True)
        self.steps = check_int("steps", steps)
        self.step_size = self.rho if step_size is None else check_number(
            "step_size", step_size, minimum=0, strict_min=True)
        if not isinstance(adaptive, bool):
            raise ValueError(f"adaptive must be true or false, got {adaptive!r}")
        self.adaptive = adaptive
        self.eta = check_number("eta", eta, minimum=0)
        self.m = check_int("m", m, optional=True)
        self.n_examples = check_int("n_examples", n_examples)
        self.batch_size = check_int("batch_size", batch_size, optional=True)
        self.seed = check_int("seed", seed, 0)
        if self.m is not None:
            if self.batch_size not in (None, self.m):
                raise ValueError(f"batch_size must be left out with m (m-sharpness measures "
                                 f"batches of m={self.m} examples), got {batch_size!r}")
            if self.n_examples % self.m:
                raise ValueError(f"n_examples must be a multiple of m={self.m}, got "
                                 f"{self.n_examples}")
            self.batch_size = self.m

    def _measure(self, model: nn.Module, task: Task, batches: list[Batch]) -> dict[str, Any]:
        available = sum(map(n_items, batches))
        if available == 0:
            raise ValueError("there are no evaluation examples to measure on")
        groups = [batches] if self.m is None else [[b] for b in batches if n_items(b) == self.m]
        if not groups:
            raise ValueError(f"no group of m={self.m} examples among the {available} "
                             "evaluation examples")
        totals = dict.fromkeys(("loss", "perturbed_loss", "epsilon_norm",
                                "forward_backward_passes", "forward_passes"), 0.0)
        with evaluating(model):
            params = trainable(model)
            scale = [p.detach().abs() + self.eta for p in params] if self.adaptive else None
            for group in groups:  # one group's perturbation in memory at a time
                found = worst_case(model, task, params, group, self.rho, self.steps,
                                   self.step_size, scale)
                for key in totals:
                    totals[key] += getattr(found, key)
        mean = {key: totals[key] / len(groups) for key in ("loss", "perturbed_loss",
                                                          "epsilon_norm")}
        return check_finite_values(self.name, {
            "sharpness": mean["perturbed_loss"] - mean["loss"], **mean,
            "n_examples": sum(n_items(b) for group in groups for b in group),
            "n_groups": len(groups),
            "forward_backward_passes": int(totals["forward_backward_passes"]),
            "forward_passes": int(totals["forward_passes"]),
        })

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "rho": self.rho, "steps": self.steps,
                "step_size": self.step_size, "adaptive": self.adaptive,
                "eta": self.eta if self.adaptive else None, "m": self.m,
                "n_examples": self.n_examples, "batch_size": self.batch_size, "seed": self.seed}
