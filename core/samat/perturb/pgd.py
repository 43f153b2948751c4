"""Projected gradient descent (Madry et al., 2018) in the ℓ∞ or ℓ2 norm, with random restarts.

With ``random_start=False``, ``restarts=1`` and ``bounds=(0, 1)`` the result equals
``torchattacks.PGD`` / ``torchattacks.PGDL2`` (cross-entropy loss) bit for bit: the arithmetic
below follows theirs operation by operation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samat.batchnorm import frozen_bn_stats
from samat.checks import check_choice, check_int
from samat.interfaces import Bounds, InputPerturbation, LossFn

PGD_NORMS = ("linf", "l2")
L2_EPS_FOR_DIVISION = 1e-10  # torchattacks.PGDL2's guard against a zero gradient


def check_bounds(bounds: Bounds | list[float]) -> Bounds:
    """``bounds`` as a ``(low, high)`` float tuple with ``low < high``, or ``None``."""
    if bounds is None:
        return None
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        low, high = 0.0, 0.0  # refused below
    if not low < high:
        raise ValueError(f"bounds must be None or (low, high) with low < high, got {bounds!r}")
    return low, high


def check_eps(eps: float) -> float:
    """``eps`` as a float; ``ValueError`` unless ``eps >= 0``."""
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    return float(eps)


def check_linf_eps(eps: float, bounds: Bounds) -> None:
    """Refuse an ℓ∞ radius wider than the input range ``bounds`` (it would allow every input
    in range: meaningless, and usually a radius meant in 1/255 units)."""
    if bounds is None:
        return
    low, high = bounds
    if eps > high - low:
        hint = f"; did you mean {eps:g}/255?" if (low, high) == (0.0, 1.0) else ""
        raise ValueError(f"eps must be <= {high - low:g} (the width of the input range "
                         f"[{low:g}, {high:g}]) for norm linf, got {eps:g}{hint}")


def check_mask(mask: Tensor | None) -> Tensor | None:
    """``mask`` unchanged if it is a tensor or ``None``; ``ValueError`` otherwise."""
    if mask is not None and not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a tensor broadcastable to the inputs or None, got {mask!r}")
    return mask


def describe_mask(mask: Tensor | None) -> str | None:
    """How ``describe()`` records a mask: ``"custom"`` or ``None``."""
    return None if mask is None else "custom"


def clamp(x: Tensor, bounds: Bounds) -> Tensor:
    """``x`` clamped to ``bounds`` (unchanged when ``bounds`` is ``None``)."""
    return x if bounds is None else torch.clamp(x, min=bounds[0], max=bounds[1])


def input_gradient(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
    """Gradient of ``loss_fn(model(x), y)`` w.r.t. ``x`` only; parameters' ``.grad`` untouched."""
    x = x.detach().requires_grad_(True)
    loss = loss_fn(model(x), y)
    return torch.autograd.grad(loss, x, retain_graph=False, create_graph=False)[0]


def per_example_loss(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
    """``(N,)`` losses: one batched forward, then ``loss_fn`` on each example's slice."""
    with torch.no_grad():
        output = model(x)
        return torch.stack([loss_fn(output[i : i + 1], y[i : i + 1]) for i in range(len(x))])


def _per_example(t: Tensor, ndim: int) -> Tensor:
    """Reshape an ``(N,)`` tensor to broadcast over an ``ndim``-dimensional batch."""
    return t.view(-1, *([1] * (ndim - 1)))


class PGD(InputPerturbation):
    """PGD maximising the task's loss within an ``eps`` ball around ``x`` (ℓ∞ or ℓ2).

    ``alpha`` is the step size; ``random_start`` draws the start uniformly in the ℓ∞ ball, or,
    for ℓ2, a Gaussian direction with radius ``uniform(0, 1) * eps`` (as torchattacks does).
    ``restarts`` runs the attack that many times and keeps, per example, the one with the highest
    loss. ``bounds`` is the valid input range (``None``: unbounded); ``mask`` (broadcastable to
    ``x``) is 1 where the input may change and 0 where it may not.
    """

    name = "pgd"

    def __init__(
        self,
        norm: str = "linf",
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        random_start: bool = True,
        restarts: int = 1,
        bounds: Bounds = (0.0, 1.0),
        mask: Tensor | None = None,
    ) -> None:
        self.norm = check_choice("norm", norm, PGD_NORMS)
        self.eps = check_eps(eps)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.steps = check_int("steps", steps, whole_floats=True)
        self.restarts = check_int("restarts", restarts, whole_floats=True)
        if self.restarts > 1 and not random_start:
            raise ValueError("restarts > 1 needs random_start=True (restarts would be identical)")
        self.random_start = bool(random_start)
        self.bounds = check_bounds(bounds)
        self.mask = check_mask(mask)
        if norm == "linf":
            check_linf_eps(self.eps, self.bounds)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "norm": self.norm,
            "eps": self.eps,
            "alpha": self.alpha,
            "steps": self.steps,
            "random_start": self.random_start,
            "restarts": self.restarts,
            "bounds": None if self.bounds is None else list(self.bounds),
            "mask": describe_mask(self.mask),
        }

    def perturb(self, model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial version of ``x`` (detached); BatchNorm statistics are not updated."""
        x = x.detach()
        if self.eps == 0:
            return x.clone()
        mask = None if self.mask is None else self.mask.to(device=x.device, dtype=x.dtype)
        with frozen_bn_stats(model), torch.enable_grad():
            best = self._attack(model, loss_fn, x, y, mask)
            if self.restarts > 1:
                best_loss = per_example_loss(model, loss_fn, best, y)
                for _ in range(self.restarts - 1):
                    x_adv = self._attack(model, loss_fn, x, y, mask)
                    loss = per_example_loss(model, loss_fn, x_adv, y)
                    better = loss > best_loss
                    best = torch.where(_per_example(better, x.ndim), x_adv, best)
                    best_loss = torch.where(better, loss, best_loss)
        return best.detach()

    def _attack(
        self, model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, mask: Tensor | None
    ) -> Tensor:
        x_adv = x.clone()
        if self.random_start:
            x_adv = clamp(x_adv + self._random_delta(x, mask), self.bounds)
        for _ in range(self.steps):
            grad = input_gradient(model, loss_fn, x_adv, y)
            if self.norm == "linf":
                x_adv = x_adv + self.alpha * grad.sign()
                delta = torch.clamp(x_adv - x, min=-self.eps, max=self.eps)
                if mask is not None:
                    delta = delta * mask
            else:
                if mask is not None:
                    grad = grad * mask  # the step then has full length alpha where allowed
                grad_norms = torch.norm(grad.flatten(1), p=2, dim=1) + L2_EPS_FOR_DIVISION
                grad = grad / _per_example(grad_norms, x.ndim)
                x_adv = x_adv + self.alpha * grad
                delta = x_adv - x
                delta_norms = torch.norm(delta.flatten(1), p=2, dim=1)
                factor = torch.min(self.eps / delta_norms, torch.ones_like(delta_norms))
                delta = delta * _per_example(factor, x.ndim)
            x_adv = clamp(x + delta, self.bounds).detach()
        return x_adv

    def _random_delta(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if self.norm == "linf":
            delta = torch.empty_like(x).uniform_(-self.eps, self.eps)
            return delta if mask is None else delta * mask
        delta = torch.empty_like(x).normal_()
        if mask is not None:
            delta = delta * mask
        n = torch.norm(delta.flatten(1), p=2, dim=1)
        n = _per_example(n.clamp_min(torch.finfo(n.dtype).tiny), x.ndim)  # all-masked example
        r = torch.zeros_like(n).uniform_(0, 1)
        return delta * (r / n * self.eps)
