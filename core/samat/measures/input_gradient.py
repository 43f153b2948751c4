"""``input_gradient_norm``: the mean over examples of ``||grad_x loss_i||``, the input-side
counterpart of weight-space sharpness (a first-order bound on what an attack of radius ``eps``
gains: ``loss_i(x + d) - loss_i(x) ~ eps ||grad_x loss_i||_*`` for the dual norm ``*``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from samat.checks import check_choice, check_int
from samat.interfaces import Task
from samat.measures.common import (
    Batch,
    NamedMeasure,
    check_finite_values,
    evaluating,
    finite,
)

NORMS = {"l2": 2.0, "l1": 1.0, "linf": float("inf")}


@contextmanager
def _captured(module: nn.Module, outputs: list[Tensor]) -> Iterator[None]:
    """While inside, ``module``'s output is replaced by a detached copy that requires grad
    (a leaf to differentiate with respect to), appended to ``outputs``."""
    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor) or not output.is_floating_point():
            raise ValueError(f"the task's input_embeddings module {type(module).__name__} "
                             f"returned {type(output).__name__}, not a float tensor")
        leaf = output.detach().requires_grad_()
        outputs.append(leaf)
        return leaf

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def input_gradients(model: nn.Module, task: Task, batch: Batch) -> tuple[Tensor, str]:
    """``grad_x sum_i loss_i`` of one batch (each example's own input gradient, examples
    being independent in eval mode), masked by ``task.input_mask()``; or with respect to the
    output of ``task.input_embeddings(model)`` when the task names one (then unmasked). The
    second value says which: ``"input"`` or ``"embeddings"``."""
    x, y = batch
    embeddings = task.input_embeddings(model)
    if embeddings is not None:
        outputs: list[Tensor] = []
        with _captured(embeddings, outputs):
            loss = task.example_losses(model(x), y).sum()
        if len(outputs) != 1:
            raise ValueError(f"the task's input_embeddings module ran {len(outputs)} times in "
                             "one forward pass, not once")
        (grad,) = torch.autograd.grad(loss, outputs)
        return grad, "embeddings"
    if not isinstance(x, Tensor) or not x.is_floating_point():
        kind = f"{x.dtype} tensors" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"the task's inputs are {kind}, not float tensors, and its "
                         "input_embeddings(model) names no module to differentiate at")
    leaf = x.detach().requires_grad_()
    (grad,) = torch.autograd.grad(task.example_losses(model(leaf), y).sum(), leaf)
    mask = task.input_mask()
    if mask is not None:
        grad = grad * mask.to(grad)
    return grad, "input"


class InputGradientNorm(NamedMeasure):
    """Mean over the measured examples of ``||grad_x loss_i||`` in ``norm`` ``l2`` (default),
    ``l1`` (the dual of l-inf: what bounds first-order l-inf attacks) or ``linf``; only where
    the task's ``input_mask()`` lets attacks act; for tasks with ``input_embeddings`` (text),
    with respect to the embedding layer's output."""

    name = "input_gradient_norm"
    key = "input_gradient_norm"

    def __init__(self, norm: str = "l2", n_examples: int = 256, batch_size: int | None = None,
                 seed: int = 0) -> None:
        self.norm = check_choice("norm", norm, NORMS)
        self.n_examples = check_int("n_examples", n_examples)
        self.batch_size = check_int("batch_size", batch_size, optional=True)
        self.seed = check_int("seed", seed, 0)

    def _measure(self, model: nn.Module, task: Task, batches: list[Batch]) -> dict[str, Any]:
        norms = []
        wrt = "input"
        with evaluating(model):
            for batch in batches:
                grad, wrt = input_gradients(model, task, batch)
                finite("the input gradient", grad)
                norms.append(torch.linalg.vector_norm(grad.flatten(1).double(),
                                                      NORMS[self.norm], dim=1))
        if not norms:
            raise ValueError("there are no evaluation examples to measure on")
        per_example = torch.cat(norms)
        return check_finite_values(self.name, {
            "input_gradient_norm": float(per_example.mean()),
            "input_gradient_norm_max": float(per_example.max()),
            "n_examples": len(per_example),
            "forward_backward_passes": len(batches),
            "details": {"wrt": wrt},
        })

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "norm": self.norm, "n_examples": self.n_examples,
                "batch_size": self.batch_size, "seed": self.seed}
