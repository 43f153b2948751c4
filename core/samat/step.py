"""The duality as one function: a training step perturbs the inputs, then the weights.

Standard training, SAM, adversarial training and SAM+AT are the four combinations of an identity
or adversarial :class:`~samat.interfaces.InputPerturbation` with a plain or sharpness-aware
:class:`~samat.interfaces.WeightPerturbation`; a task never knows which one runs.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from samat.interfaces import InputPerturbation, LossFn, StepResult, WeightPerturbation


def train_step(
    input_perturbation: InputPerturbation,
    weight_perturbation: WeightPerturbation,
    model: nn.Module,
    loss_fn: LossFn,
    x: Any,
    y: Tensor,
    *,
    perturb_model: nn.Module | None = None,
) -> StepResult:
    """``x' = input_perturbation.perturb(...)`` (identity, PGD, FGSM, ...), then one
    ``weight_perturbation.step(...)`` (a plain step, SAM, ...) on ``x'``.

    ``perturb_model`` is the model inputs are crafted against when it must differ from the one
    the weights step through (under data parallelism: the module inside
    ``DistributedDataParallel``, whose gradient hooks only a weight step may trigger).
    Raises :class:`~samat.interfaces.NonFiniteStep` before any weight changes if a loss or
    gradient is not finite.
    """
    crafted_on = model if perturb_model is None else perturb_model  # modules may define len()
    x_in = input_perturbation.perturb(crafted_on, loss_fn, x, y)
    return weight_perturbation.step(model, loss_fn, x_in, y)
