"""A small Gaussian-blobs classification task: ``k`` clusters in ``[0, 1]^d`` and an MLP."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from samat import Task


def mlp(n_features: int, hidden: int, n_classes: int) -> nn.Module:
    """The task's model: two hidden ReLU layers of ``hidden`` units (also the plugin's
    ``model_builder``: ``samat.load_model`` rebuilds exported models with it)."""
    return nn.Sequential(
        nn.Linear(n_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )


class BlobsTask(Task):
    """``n_classes`` Gaussian blobs (std ``cluster_std``) in ``n_features`` dimensions.

    Class centres lie evenly on a circle of radius ``radius`` around the centre of the unit cube
    (in the first two dimensions, at a seed-dependent angle); points are clamped to ``[0, 1]``,
    so the default ``input_bounds = (0, 1)`` apply and ``eps`` is in input units. Train and test
    sets are drawn from independent streams of ``seed``. Loss (cross-entropy) and metric
    (``Accuracy``, in percent) are :class:`samat.Task`'s defaults.
    """

    def __init__(
        self,
        n_classes: int = 3,
        n_features: int = 2,
        n_train: int = 2048,
        n_test: int = 1024,
        cluster_std: float = 0.08,
        radius: float = 0.3,
        hidden: int = 64,
        seed: int = 0,
    ) -> None:
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        if n_features < 2:
            raise ValueError(f"n_features must be >= 2, got {n_features}")
        if n_train < 1 or n_test < 1:
            raise ValueError(f"n_train and n_test must be >= 1, got {n_train}, {n_test}")
        if not cluster_std > 0:
            raise ValueError(f"cluster_std must be > 0, got {cluster_std}")
        if not 0 < radius <= 0.5:
            raise ValueError(f"radius must be in (0, 0.5], got {radius}")
        self.n_classes, self.n_features = int(n_classes), int(n_features)
        self.n_train, self.n_test, self.hidden = int(n_train), int(n_test), int(hidden)
        self.cluster_std, self.radius, self.seed = float(cluster_std), float(radius), int(seed)
        self.centers = self._centers()

    def _centers(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 3 + 2)
        phase = torch.rand(1, generator=generator).item()
        angles = 2 * math.pi * (torch.arange(self.n_classes) + phase) / self.n_classes
        centers = torch.full((self.n_classes, self.n_features), 0.5)
        centers[:, 0] += self.radius * torch.cos(angles)
        centers[:, 1] += self.radius * torch.sin(angles)
        return centers

    def _sample(self, stream: int, size: int) -> TensorDataset:
        generator = torch.Generator().manual_seed(self.seed * 3 + stream)
        y = torch.randint(self.n_classes, (size,), generator=generator)
        noise = torch.randn(size, self.n_features, generator=generator)
        x = (self.centers[y] + self.cluster_std * noise).clamp(0.0, 1.0)
        return TensorDataset(x, y)

    def train_dataset(self) -> TensorDataset:
        return self._sample(0, self.n_train)

    def eval_dataset(self) -> TensorDataset:
        return self._sample(1, self.n_test)

    def build_model(self) -> nn.Module:
        return mlp(self.n_features, self.hidden, self.n_classes)

    def model_spec(self) -> dict[str, Any]:
        """What :func:`mlp` needs to build the model again: every run exports it."""
        return {"architecture": {"n_features": self.n_features, "hidden": self.hidden,
                                 "n_classes": self.n_classes},
                "input_shape": [self.n_features], "output": "logits over the classes"}

    def describe(self) -> dict[str, Any]:
        return {
            "distribution": "Gaussian blobs on a circle in [0,1]^d",
            "n_classes": self.n_classes,
            "n_features": self.n_features,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "cluster_std": self.cluster_std,
            "radius": self.radius,
            "seed": self.seed,
        }
