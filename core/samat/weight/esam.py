"""ESAM: Efficient Sharpness-Aware Minimization (Du et al., ICLR 2022).

Two savings on top of SAM: *stochastic weight perturbation* (SWP) perturbs a random subset of the
weights, and *sharpness-sensitive data selection* (SDS) computes the descent gradient on the
examples whose loss the perturbation raised most. SWP lives in :meth:`ESAM.first_step`; SDS needs
per-example losses, so the caller computes them and asks :meth:`ESAM.select` which examples to
keep (``samat.weight.ESAMStep`` does both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

from samat.checks import check_fraction
from samat.weight.sam import SAM

_EPS = 1e-12  # the same guard as SAM's ascent step


class ESAM(SAM):
    """SAM with stochastic weight perturbation and a data-selection helper (davda54 API).

    ``first_step`` draws an element-wise mask ``m ~ Bernoulli(beta)`` (``torch.rand(p.shape) <
    beta`` per parameter with a gradient, in ``param_groups`` order, from ``generator`` or the
    global RNG of ``p``'s device) and moves the weights to ``w + (rho / beta) * m * g / ||g||``,
    ``||g||`` being the norm of the *whole* gradient, so the perturbation is unbiased. With
    ``beta=1`` no mask is drawn and the step is exactly SAM's. ``gamma`` is the fraction of a
    batch :meth:`select` keeps. Everything else (``second_step``, ``step(closure)``, GradScaler,
    ``state_dict``) is :class:`SAM`'s.
    """

    def __init__(
        self,
        params: ParamsT,
        base_optimizer: Callable[..., Optimizer],
        rho: float = 0.05,
        beta: float = 0.6,
        gamma: float = 0.5,
        adaptive: bool = False,
        model: nn.Module | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        self.beta, self.gamma = check_fraction("beta", beta), check_fraction("gamma", gamma)
        super().__init__(params, base_optimizer, rho=rho, adaptive=adaptive, model=model,
                         **kwargs)
        self.generator = generator

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Save ``w`` and move a random ``beta`` fraction of the weights (SWP, see the class)."""
        if self.beta == 1.0:
            super().first_step(zero_grad)
            return
        if self._saved is not None:
            raise RuntimeError("first_step() called twice without second_step() in between")
        with_grad = [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]
        self._saved = [(p, self._copy_of(p)) for _, p in with_grad]
        grad_norm = self._grad_norm()
        self.grad_norm = float(grad_norm)
        if torch.isfinite(grad_norm):
            for group, p in with_grad:
                mask = torch.rand(p.shape, device=p.device, generator=self.generator) < self.beta
                e = p.square().mul_(p.grad) if group["adaptive"] else p.grad.clone()
                scale = (group["rho"] / (self.beta * (grad_norm + _EPS))).to(p)
                p.addcmul_(e.mul_(mask), scale)
        if zero_grad:
            self.zero_grad()

    def select(self, losses_before: Tensor, losses_after: Tensor) -> Tensor | None:
        """SDS: indices (ascending) of the ``round(gamma * n)`` (at least 1) examples with the
        highest instance sharpness ``losses_after - losses_before``; ``None`` when ``gamma=1``
        (keep the whole batch)."""
        if self.gamma == 1.0:
            return None
        sharpness = (losses_after - losses_before).detach().flatten()
        k = max(1, int(self.gamma * sharpness.numel() + 0.5))
        return sharpness.topk(k).indices.sort().values
