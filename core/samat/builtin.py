"""samat's own plugin: plain step, SAM, ASAM, ESAM, LookSAM; identity, PGD and FGSM
perturbations/attacks.

Registered through the ``samat`` entry-point group like any third-party plugin. Factories are
given as lazy import paths so that loading this plugin imports no torch code.
"""

from __future__ import annotations

from samat.hookspecs import Register, hookimpl

_PGD = "Projected gradient descent, l-inf or l2, with random start and restarts (Madry et al. 2018)"
_FGSM = "Fast gradient sign method: one l-inf step of size eps (Goodfellow et al. 2015)"


@hookimpl
def samat_register_input_perturbations(register: Register) -> None:
    register("none", "samat.perturb:Identity", "No input perturbation (standard training, SAM)")
    register("pgd", "samat.perturb:PGD", _PGD)
    register("fgsm", "samat.perturb:FGSM", _FGSM)


@hookimpl
def samat_register_attacks(register: Register) -> None:
    register("pgd", "samat.perturb:PGD", _PGD)
    register("fgsm", "samat.perturb:FGSM", _FGSM)


@hookimpl
def samat_register_weight_perturbations(register: Register) -> None:
    register("none", "samat.weight:PlainStep", "No weight perturbation: a plain optimizer step")
    register("sam", "samat.weight:SAMStep", "Sharpness-aware minimization (Foret et al. 2021)")
    register("asam", "samat.weight:ASAMStep",
             "Adaptive SAM: perturbation scaled by |w| (Kwon et al. 2021)")
    register("esam", "samat.efficient_sam:ESAMStep",
             "Efficient SAM: random weight subset, sharpest examples (Du et al. 2022)")
    register("looksam", "samat.efficient_sam:LookSAMStep",
             "LookSAM: SAM every k steps, reused SAM direction between (Liu et al. 2022)")
