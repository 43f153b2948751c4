"""Optimizers: SAM/ASAM and the BatchNorm helper used by two-pass steps."""

from samat.optim.bn import frozen_bn_stats
from samat.optim.sam import SAM

__all__ = ["SAM", "frozen_bn_stats"]
