"""Data loaders and device transfer shared by training and evaluation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from samat.interfaces import Task


def to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move tensors, and tensors inside dicts/lists/tuples, to ``device``; with
    ``channels_last`` 4-D tensors also take that memory format (other tensors are unchanged)."""
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.ndim == 4:
            return obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, dict):
        return {k: to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(v, device, channels_last) for v in obj)
    return obj


def device_batches(
    loader: Iterable[tuple[Any, Any]], device: torch.device, channels_last: bool = False
) -> Iterator[tuple[Any, Any]]:
    """``(x, y)`` pairs of ``loader`` moved to ``device`` (inputs in channels_last if asked)."""
    for x, y in loader:
        yield to_device(x, device, channels_last), to_device(y, device)


def batches_per_epoch(n: int, batch_size: int, drop_last: bool, world_size: int = 1) -> int:
    """Optimisation steps per epoch over ``n`` examples with global batches of ``batch_size``.

    A last partial batch counts unless ``drop_last``, or unless it has fewer examples than the
    ``world_size`` replicas that would share it (it is then skipped)."""
    full, rest = divmod(n, batch_size)
    return full + int(rest > 0 and not drop_last and rest >= world_size)


class EpochBatchSampler(Sampler[list[int]]):
    """Global batches of a permutation of ``range(n)`` drawn from ``generator`` when iteration
    starts (the same draw as a shuffled ``DataLoader``); replica ``rank`` of ``world_size``
    yields the ``rank``-th of the ``world_size`` near-equal contiguous parts of each batch."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, drop_last: bool,
                 rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size

    def __len__(self) -> int:
        return batches_per_epoch(self.n, self.batch_size, self.drop_last, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator)
        for i in range(len(self)):
            batch = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield torch.tensor_split(batch, self.world_size)[self.rank].tolist()


def train_loader(
    task: Task, dataset: Dataset, batch_size: int, seed: int, epoch: int, num_workers: int,
    drop_last: bool = False, rank: int = 0, world_size: int = 1,
) -> DataLoader:
    """Shuffled loader whose order depends only on ``(seed, epoch)`` — resumable exactly.

    ``batch_size`` is the global batch: under data parallelism replica ``rank`` of
    ``world_size`` loads its contiguous part of every global batch, so the replicas together
    see exactly the batches one process would. ``drop_last`` skips a last partial batch
    (BatchNorm cannot train on a single example)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    sampler = EpochBatchSampler(len(dataset), batch_size, generator, drop_last, rank, world_size)
    # the loader draws its workers' base seed from the same generator before the permutation
    return DataLoader(dataset, batch_sampler=sampler, generator=generator,
                      num_workers=num_workers, collate_fn=task.collate_fn)


def eval_loader(
    task: Task, dataset: Dataset, batch_size: int, n_examples: int | None, num_workers: int = 0,
    rank: int = 0, world_size: int = 1,
) -> DataLoader:
    """The first ``n_examples`` (all if None) of ``dataset`` in order; with ``world_size > 1``
    replica ``rank``'s contiguous near-equal share of them."""
    n = len(dataset) if n_examples is None else min(n_examples, len(dataset))
    start, stop = rank * n // world_size, (rank + 1) * n // world_size
    if (start, stop) != (0, len(dataset)):
        dataset = Subset(dataset, range(start, stop))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=task.collate_fn,
    )
