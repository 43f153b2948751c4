"""An input perturbation bound to a model: the evaluation-time ``Attack``."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from samat.interfaces import Attack, InputPerturbation, LossFn


class ModelAttack(Attack):
    """``attack(x, y)`` runs ``perturbation`` against ``model`` in eval mode.

    Every submodule's train/eval mode is restored afterwards (also on exceptions).
    ``loss_fn`` defaults to cross-entropy.
    """

    def __init__(
        self, perturbation: InputPerturbation, model: nn.Module, loss_fn: LossFn | None = None
    ) -> None:
        self.perturbation = perturbation
        self.model = model
        self.loss_fn: LossFn = loss_fn or nn.functional.cross_entropy

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.perturbation.name

    def describe(self) -> dict[str, Any]:
        return self.perturbation.describe()

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        was_training = self.model.training
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            return self.perturbation.perturb(self.model, x, y, self.loss_fn)
        finally:
            self.model.train(was_training)
            for module, training in modes:  # submodules whose mode differed from the model's
                module.training = training
