"""Optimizers: SAM/ASAM, ESAM, LookSAM and the BatchNorm helper used by two-pass steps."""

from samat.optim.bn import frozen_bn_stats
from samat.optim.esam import ESAM
from samat.optim.looksam import LookSAM
from samat.optim.sam import SAM

__all__ = ["ESAM", "SAM", "LookSAM", "frozen_bn_stats"]
