"""The no-op input perturbation of standard (non-adversarial) training."""

from __future__ import annotations

from torch import Tensor, nn

from samat.interfaces import InputPerturbation, LossFn


class Identity(InputPerturbation):
    """Returns the clean batch itself, without calling the model."""

    name = "none"

    def perturb(self, model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
        return x
