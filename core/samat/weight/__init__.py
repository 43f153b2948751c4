"""The weight side of the duality: SAM-family optimizers (drop-in for the widely copied
davda54/sam API) and the weight perturbations the trainer steps with them."""

from samat.weight.esam import ESAM
from samat.weight.looksam import LookSAM
from samat.weight.sam import SAM
from samat.weight.steps import ASAMStep, ESAMStep, LookSAMStep, PlainStep, SAMStep

__all__ = ["ASAMStep", "ESAM", "ESAMStep", "LookSAM", "LookSAMStep", "PlainStep", "SAM",
           "SAMStep"]
