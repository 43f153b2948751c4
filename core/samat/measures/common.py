"""What every measure shares: the model held in eval mode, its trainable parameters, the
batches' weights in an example-weighted mean loss, and the finite-value check."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from samat.interfaces import Measure, Task

Batch = tuple[Any, Tensor]


@contextmanager
def evaluating(model: nn.Module, double_backward: bool = False) -> Iterator[None]:
    """Inside the block ``model`` is in eval mode (BatchNorm uses, and never updates, its
    running statistics; dropout is off) and gradients are enabled; with ``double_backward``
    scaled dot-product attention uses its math kernel (the fused kernels cannot be
    differentiated twice). Every module's train/eval mode is restored on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.enable_grad(), ExitStack() as stack:
            if double_backward:
                stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
            yield
    finally:
        for module, mode in modes:
            module.training = mode


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that require a gradient (frozen ones are left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return params


def n_items(batch: Batch) -> int:
    """The number of examples of ``batch`` (the first dimension of its targets)."""
    return int(batch[1].shape[0])


def weights(batches: Sequence[Batch]) -> list[float]:
    """``n_b / N`` for each batch: the mean of the batches' mean losses weighted by their
    sizes is the mean over all examples (for tasks whose loss is a per-example mean)."""
    sizes = [n_items(b) for b in batches]
    total = sum(sizes)
    if total == 0:
        raise ValueError("there are no evaluation examples to measure on")
    return [size / total for size in sizes]


def mean_loss(model: nn.Module, task: Task, batch: Batch, weight: float) -> Tensor:
    """``weight * task.loss(model(x), y)`` of one batch, checked to be finite."""
    x, y = batch
    loss = task.loss(model(x), y) * weight
    finite("the loss", loss)
    return loss


def finite(what: str, value: Tensor | float) -> None:
    """Raise ``ValueError`` unless ``value`` is finite everywhere."""
    tensor = torch.as_tensor(value)
    if not bool(torch.isfinite(tensor).all()):
        bad = tensor.detach().double().reshape(-1)
        bad = bad[~torch.isfinite(bad)]
        raise ValueError(f"{what} is not finite ({float(bad[0])}) at these weights and "
                         "examples")


def check_finite_values(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values``, after checking that every number among them is finite (``ValueError``
    naming the measure ``name`` and the value otherwise)."""
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"measure {name}: {key} is {value}, not a finite number")
    return values


class NamedMeasure(Measure):
    """A built-in measure: :meth:`measure` runs :meth:`_measure` and prefixes its refusals
    (``ValueError``) with ``measure <name>:``."""

    def measure(self, model: nn.Module, task: Task, batches: list[Batch]) -> dict[str, Any]:
        try:
            return self._measure(model, task, batches)
        except ValueError as error:
            raise ValueError(f"measure {self.name}: {error}") from None

    def _measure(self, model: nn.Module, task: Task, batches: list[Batch]) -> dict[str, Any]:
        raise NotImplementedError
