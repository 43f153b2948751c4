"""A tiny task whose data or loss turns non-finite on demand, registered in-process."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from samat import hookimpl
from samat.interfaces import Task
from samat.testing import registered


class PoisonTask(Task):
    """64 training pairs in 4 features; ``poison`` (an index) makes that input NaN;
    ``nan_calls`` are the 1-based loss calls that return NaN (counted per task object)."""

    input_bounds = None

    def __init__(self, poison: int = -1, nan_calls: list[int] = (), seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(64, 4, generator=generator)
        self.y = (self.x[:, 0] > 0).long()
        if poison >= 0:
            self.x[poison] = float("nan")
        self.nan_calls, self.calls = set(nan_calls), 0

    def train_dataset(self) -> TensorDataset:
        return TensorDataset(self.x, self.y)

    def eval_dataset(self) -> TensorDataset:
        return TensorDataset(self.x[:32].nan_to_num(0.0), self.y[:32])

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        loss = nn.functional.cross_entropy(output, target)
        if output.requires_grad:  # training passes only
            self.calls += 1
            if self.calls in self.nan_calls:
                return loss * float("nan")
        return loss


class _Plugin:
    @hookimpl
    def samat_register_tasks(self, register) -> None:
        register("poison_test", PoisonTask)


def poison_task() -> AbstractContextManager[None]:
    """Task ``poison_test`` registered for the ``with`` block."""
    return registered(_Plugin(), "poison_test")


def recipe(tmp_path, **train) -> dict:
    return {"task": {"name": "poison_test"}, "seed": 0, "device": "cpu",
            "output_dir": str(tmp_path / "run"),
            "train": {"epochs": 3, "batch_size": 16, "eval_every": 0,
                      "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, **train}}
