"""Fast gradient sign method (Goodfellow et al., 2015): one signed-gradient step of size eps.

With ``bounds=(0, 1)`` the result equals ``torchattacks.FGSM`` (cross-entropy loss) bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samat.batchnorm import frozen_bn_stats
from samat.interfaces import Bounds, InputPerturbation, LossFn
from samat.perturb.pgd import (
    check_bounds,
    check_eps,
    check_linf_eps,
    check_mask,
    clamp,
    describe_mask,
    input_gradient,
)


class FGSM(InputPerturbation):
    """``x + eps * sign(∇ₓ loss)``, clamped to ``bounds`` (``None``: unbounded); ``mask``
    (broadcastable to ``x``) is 1 where the input may change and 0 where it may not."""

    name = "fgsm"

    def __init__(
        self, eps: float = 8 / 255, bounds: Bounds = (0.0, 1.0), mask: Tensor | None = None
    ) -> None:
        self.eps = check_eps(eps)
        self.bounds = check_bounds(bounds)
        self.mask = check_mask(mask)
        check_linf_eps(self.eps, self.bounds)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "eps": self.eps,
            "bounds": None if self.bounds is None else list(self.bounds),
            "mask": describe_mask(self.mask),
        }

    def perturb(self, model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial version of ``x`` (detached); BatchNorm statistics are not updated."""
        x = x.detach()
        if self.eps == 0:
            return x.clone()
        with frozen_bn_stats(model), torch.enable_grad():
            grad = input_gradient(model, loss_fn, x, y)
        step = self.eps * grad.sign()
        if self.mask is not None:
            step = step * self.mask.to(device=x.device, dtype=x.dtype)
        return clamp(x + step, self.bounds).detach()
