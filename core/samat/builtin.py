"""samat's own plugin: plain step, SAM, ASAM, ESAM, LookSAM; identity, PGD and FGSM
perturbations/attacks; the measures sam_sharpness, hessian and input_gradient_norm; the
accuracy metric.

Registered through the ``samat`` entry-point group like any third-party plugin. Factories are
given as lazy import paths so that loading this plugin imports no torch code.
"""

from __future__ import annotations

from samat.hookspecs import Register, RegisterMetric, hookimpl

_PGD = "Projected gradient descent, l-inf or l2, with random start and restarts (Madry et al. 2018)"
_FGSM = "Fast gradient sign method: one l-inf step of size eps (Goodfellow et al. 2015)"
_PGD_EXAMPLE = {"eps": 0.03, "alpha": 0.01, "steps": 2}
_FGSM_EXAMPLE = {"eps": 0.03}


@hookimpl
def samat_register_input_perturbations(register: Register) -> None:
    register("none", "samat.perturb:Identity", "No input perturbation (standard training, SAM)")
    register("pgd", "samat.perturb:PGD", _PGD, example=_PGD_EXAMPLE, label="AT")
    register("fgsm", "samat.perturb:FGSM", _FGSM, example=_FGSM_EXAMPLE, label="FGSM-AT")


@hookimpl
def samat_register_attacks(register: Register) -> None:
    register("pgd", "samat.perturb:pgd_attack", _PGD, example=_PGD_EXAMPLE)
    register("fgsm", "samat.perturb:fgsm_attack", _FGSM, example=_FGSM_EXAMPLE)


@hookimpl
def samat_register_weight_perturbations(register: Register) -> None:
    register("none", "samat.weight:PlainStep", "No weight perturbation: a plain optimizer step")
    register("sam", "samat.weight:SAMStep", "Sharpness-aware minimization (Foret et al. 2021)",
             example={"rho": 0.05})
    register("asam", "samat.weight:ASAMStep",
             "Adaptive SAM: perturbation scaled by |w| (Kwon et al. 2021)", example={"rho": 0.5})
    register("esam", "samat.weight:ESAMStep",
             "Efficient SAM: random weight subset, sharpest examples (Du et al. 2022)",
             example={"rho": 0.05, "beta": 0.6, "gamma": 0.5})
    register("looksam", "samat.weight:LookSAMStep",
             "LookSAM: SAM every k steps, reused SAM direction between (Liu et al. 2022)",
             example={"rho": 0.05, "k": 2, "alpha": 0.7}, label="LookSAM")


@hookimpl
def samat_register_measures(register: Register) -> None:
    register("sam_sharpness", "samat.measures:SAMSharpness",
             "Worst-case loss increase in a weight ball of radius rho, by k projected ascent "
             "steps (k=1: SAM's own); l2 or adaptive (ASAM) ball, m-sharpness",
             example={"rho": 0.05, "steps": 2, "n_examples": 4})
    register("hessian", "samat.measures:HessianSpectrum",
             "Top-k eigenvalues of the loss Hessian (power iteration or Lanczos on "
             "Hessian-vector products) and its trace (Hutchinson)",
             example={"iterations": 2, "trace_samples": 2, "n_examples": 2})
    register("input_gradient_norm", "samat.measures:InputGradientNorm",
             "Mean norm of each example's loss gradient with respect to its input (text: the "
             "embeddings)", example={"n_examples": 4})


@hookimpl
def samat_register_metrics(register: RegisterMetric) -> None:
    register("accuracy", "accuracy")
