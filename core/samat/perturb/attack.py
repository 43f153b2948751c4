"""An input perturbation bound to a model: the evaluation-time ``Attack``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from samat.interfaces import Attack, AttackMismatch, InputPerturbation, LossFn, Probe


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

    def check(self, probe: Probe) -> None:
        """Refuse inputs that are not float tensors (token ids, texts): there is no gradient
        with respect to them to follow."""
        x = probe.x
        if not (isinstance(x, Tensor) and x.is_floating_point()):
            got = (f"{str(x.dtype).removeprefix('torch.')} tensors" if isinstance(x, Tensor)
                   else type(x).__name__)
            raise AttackMismatch(f"{self.name} perturbs float input tensors, but the task's "
                                 f"inputs are {got}",
                                 fix="choose an attack for this task (samat list attacks)")

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        was_training = self.model.training
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            return self.perturbation.perturb(self.model, self.loss_fn, x, y)
        finally:
            self.model.train(was_training)
            for module, training in modes:  # submodules whose mode differed from the model's
                module.training = training


def attack_factory(cls: type[InputPerturbation]) -> Callable[..., ModelAttack]:
    """The attack factory of the input perturbation ``cls``: ``factory(model, loss_fn=None,
    **params)`` builds ``cls(**params)`` and binds it to ``model``. Its signature is ``cls``'s
    (plus ``model`` and ``loss_fn``), so recipes are checked against ``cls``'s parameters."""

    def factory(model: nn.Module, loss_fn: LossFn | None = None, **params: Any) -> ModelAttack:
        return ModelAttack(cls(**params), model, loss_fn)

    own = list(inspect.signature(cls).parameters.values())
    factory.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("loss_fn", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
        *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own),
    ])
    factory.__name__ = factory.__qualname__ = f"{cls.__name__.lower()}_attack"
    factory.__doc__ = cls.__doc__
    return factory
