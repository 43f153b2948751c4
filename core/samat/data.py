"""Data loaders and device transfer shared by training and evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from samat.interfaces import Task


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors, and tensors inside dicts/lists/tuples, to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def train_loader(
    task: Task, dataset: Dataset, batch_size: int, seed: int, epoch: int, num_workers: int,
    drop_last: bool = False,
) -> DataLoader:
    """Shuffled loader whose order depends only on ``(seed, epoch)`` — resumable exactly.

    ``drop_last`` skips a last partial batch (BatchNorm cannot train on a single example)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=drop_last, generator=generator,
        num_workers=num_workers, collate_fn=task.collate_fn,
    )


def eval_loader(
    task: Task, dataset: Dataset, batch_size: int, n_examples: int | None, num_workers: int = 0
) -> DataLoader:
    """The first ``n_examples`` (all if None) of ``dataset`` in order."""
    if n_examples is not None and n_examples < len(dataset):
        dataset = Subset(dataset, range(n_examples))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=task.collate_fn,
    )
