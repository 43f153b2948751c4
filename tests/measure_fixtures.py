"""Small models and batches the measure tests share: the section 4 toy task in float64 with
trained-looking weights, a BatchNorm model of the fixture task, and batches of their data."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samat.interfaces import Task
from samat.testing import FixtureTask, model_state, sample_batch
from samat_toy.task import ToyDualityTask


def toy(n: int = 5, n_test: int = 12, seed: int = 0) -> tuple[Task, nn.Module]:
    """The toy task and its linear model in float64, with weights drawn from ``seed``."""
    task = ToyDualityTask(n=n, n_train=8, n_test=n_test, seed=seed)
    model = task.build_model().double()
    with torch.no_grad():
        model.linear.weight.copy_(torch.randn(model.linear.weight.shape,
                                              generator=torch.Generator().manual_seed(seed),
                                              dtype=torch.float64))
    return task, model


def batches(task: Task, n: int, batch_size: int, dtype: torch.dtype | None = torch.float64
            ) -> list[tuple[Any, Tensor]]:
    """The first ``n`` evaluation examples in batches of ``batch_size`` (inputs in ``dtype``)."""
    out = []
    for start in range(0, n, batch_size):
        x, y = sample_batch(task, "eval", min(batch_size, n - start), start)
        out.append((x.to(dtype) if dtype else x, y.to(dtype) if y.is_floating_point() and dtype
                    else y))
    return out


def batchnorm_model() -> tuple[Task, nn.Module, list[tuple[Any, Tensor]]]:
    """The fixture task's BatchNorm model with non-trivial running statistics, in train mode,
    and two evaluation batches."""
    task = FixtureTask(n_train=16, n_test=12)
    model = task.build_model()
    model.train()
    with torch.no_grad():
        model(sample_batch(task, "train", 16)[0])  # running statistics that are not 0/1
    return task, model, batches(task, 12, 8, dtype=None)


def assert_untouched(model: nn.Module, before: dict[str, Tensor], training: bool) -> None:
    """Weights and buffers bit-identical to ``before``, no ``.grad``, the mode ``training``."""
    after = model_state(model)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert all(m.training == training for m in model.modules())


__all__ = ["assert_untouched", "batches", "batchnorm_model", "model_state", "toy"]
