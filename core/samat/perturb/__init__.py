"""Input perturbations (identity, FGSM, PGD) and the evaluation attack built from them."""

from samat.perturb.attack import ModelAttack, attack_factory
from samat.perturb.fgsm import FGSM
from samat.perturb.identity import Identity
from samat.perturb.pgd import PGD

pgd_attack = attack_factory(PGD)
fgsm_attack = attack_factory(FGSM)

__all__ = ["FGSM", "PGD", "Identity", "ModelAttack", "attack_factory", "fgsm_attack",
           "pgd_attack"]
