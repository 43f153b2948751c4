"""Data-parallel training under torchrun: process group, ranks, device, sharded evaluation with
mergeable metrics (``samat run --nproc N`` itself is :mod:`samat.launch`).

Outside torchrun (``WORLD_SIZE`` unset or 1) every function here is a cheap no-op, so the
single-process path is the distributed path with one replica. See docs/distributed.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from samat.errors import SamatError
from samat.interfaces import Attack, Metric, Task, accumulate

if TYPE_CHECKING:
    from samat.recipe import TrainConfig

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel replicas."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory."""
        return self.rank == 0


def launched() -> bool:
    """True in a process that torchrun started with ``WORLD_SIZE > 1``."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; an unavailable device is a user error. Under
    torchrun, ``cuda`` is ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SamatError(f"device: '{name}' requested but CUDA is not available; use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SamatError("device: 'mps' requested but not available; use auto or cpu")
    if launched():
        if name == "cuda":
            return torch.device("cuda", local_rank())
        if name != "cpu":
            raise SamatError(f"device: '{name}' under torchrun; use auto, cuda (each process "
                             "takes cuda:LOCAL_RANK) or cpu")
    return torch.device(name)


def world() -> World:
    """The current world: from the initialised default process group, else one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), local_rank())
    return World()


def replica_batch_size(batch_size: int, world_size: int) -> int:
    """Each replica's share of the global ``train.batch_size``; it must divide evenly."""
    if batch_size % world_size:
        raise SamatError(
            f"train.batch_size: {batch_size} is the global batch and must be divisible by the "
            f"{world_size} processes; set it to a multiple of {world_size}"
        )
    return batch_size // world_size


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Under torchrun, the default process group for the block (nccl on cuda, gloo otherwise),
    ended with a barrier and ``destroy_process_group``; ranks other than 0 log warnings only.

    Outside torchrun, or when a group exists already (its owner ends it), only the world.
    """
    if not launched() or dist.is_initialized():
        yield world()
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    current = world()
    logger = logging.getLogger("samat")
    level = logger.level
    if not current.is_main:
        logger.setLevel(logging.WARNING)
    try:
        yield current
        dist.barrier()
    finally:
        logger.setLevel(level)
        dist.destroy_process_group()


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model``."""
    if not world().distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; every rank returns its result or raises its SamatError."""
    if not world().distributed:
        return fn()
    message: list[Any] = [None, None]
    if world().is_main:
        try:
            message = [fn(), None]
        except SamatError as exc:
            message = [None, str(exc)]
    dist.broadcast_object_list(message, src=0)
    if message[1] is not None:
        raise SamatError(message[1])
    return message[0]


def _reduce_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over ranks (``values`` itself in one process)."""
    if not world().distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_true(flag: bool) -> bool:
    """Whether ``flag`` is true on every rank (``flag`` itself in one process)."""
    if not world().distributed:
        return flag
    tensor = torch.tensor([0.0 if flag else 1.0], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor)
    return bool(tensor.item() == 0)


def all_reduce_metric(metric: Metric) -> bool:
    """Sum ``metric.state()`` over ranks into every rank's ``metric``; False (and ``metric``
    untouched) if the metric is not mergeable. Every rank must call it."""
    state = metric.state()
    if state is None:
        return False
    if world().distributed:
        device = _reduce_device()
        summed = []
        for tensor in state:
            reduced = tensor.to(device)
            dist.all_reduce(reduced)
            summed.append(reduced.to(tensor.device))
        metric.load_state(summed)
    return True


def shardable(task: Task) -> bool:
    """Whether ``task``'s evaluation can be split across ranks: it keeps the default
    ``Task.evaluate`` and its metric has a mergeable ``state()``."""
    return type(task).evaluate is Task.evaluate and task.new_metric().state() is not None


def evaluate(
    task: Task,
    model: nn.Module,
    batches: Callable[[int, int], Iterable[tuple[Any, torch.Tensor]]],
    attack: Attack | None = None,
) -> dict[str, Any]:
    """``task.evaluate`` on ``batches(rank, world_size)`` (that rank's shard of the evaluation
    set): for a :func:`shardable` task the default loop runs on every rank's shard and the
    metric is summed over ranks; any other task is evaluated on rank 0 with ``batches(0, 1)``
    and its result shared. Every rank returns the same values."""
    current = world()
    if not current.distributed:
        return task.evaluate(model, batches(0, 1), attack)
    if shardable(task):
        metric = accumulate(task, model, batches(current.rank, current.size), attack)
        all_reduce_metric(metric)
        return metric.compute()
    return on_main(lambda: task.evaluate(model, batches(0, 1), attack))


def check_train(cfg: TrainConfig, world_size: int, device: torch.device) -> None:
    """Raise a SamatError if ``train`` cannot run on ``world_size`` replicas on ``device``."""
    replica_batch_size(cfg.batch_size, world_size)
    if cfg.sync_bn and world_size > 1 and device.type != "cuda":
        raise SamatError("train.sync_bn: SyncBatchNorm needs CUDA devices; set "
                         "train.sync_bn=false on cpu")
