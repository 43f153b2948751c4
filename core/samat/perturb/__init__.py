"""Input perturbations (identity, FGSM, PGD) and the evaluation attack built from them."""

from samat.perturb.attack import ModelAttack
from samat.perturb.fgsm import FGSM
from samat.perturb.identity import Identity
from samat.perturb.pgd import PGD

__all__ = ["FGSM", "PGD", "Identity", "ModelAttack"]
