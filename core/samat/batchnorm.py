"""Freeze BatchNorm running statistics while still normalising with batch statistics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Inside the block, BatchNorm layers of ``model`` do not update their running statistics.

    Train-mode layers still normalise with batch statistics (the output equals a normal
    train-mode forward); eval-mode layers keep using their running statistics. Neither
    ``running_mean``/``running_var`` nor ``num_batches_tracked`` change, whatever ``momentum``
    is (including ``None``). Implemented by clearing ``track_running_stats`` for the duration
    (``_BatchNorm.forward`` then passes no running buffers to ``F.batch_norm`` in train mode);
    it is restored on exit, also on exceptions. Nesting is allowed.
    """
    frozen = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for module in frozen:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module in frozen:
            module.track_running_stats = True
