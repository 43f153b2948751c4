"""Fast Adaptive Boundary attack (Croce & Hein, 2020), via ``torchattacks.FAB``."""

from __future__ import annotations

from torch import nn

from samat import LossFn, check_choice, check_int, check_number
from samat_image.attacks._base import (
    TORCHATTACKS_NORMS,
    TorchattacksAttack,
    TorchattacksSpec,
    check_eps,
)


def fab(
    model: nn.Module,
    loss_fn: LossFn | None = None,
    *,
    norm: str = "l2",
    eps: float,
    steps: int = 10,
    n_classes: int = 10,
    targeted: bool = False,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    seed: int = 0,
) -> TorchattacksAttack:
    """FAB in the ℓ∞ or ℓ2 norm; an adversarial is kept only if it lies within ``eps``.

    ``steps=10`` is the paper's FAB column (ℓ2, 32/255); the reference AutoAttack's FAB uses 100.
    ``targeted=True`` runs FAB-T against the ``min(9, n_classes - 1)`` most likely other classes
    (as in AutoAttack); untargeted FAB ignores ``n_classes`` except to check the model's output.
    ``loss_fn`` is not used (FAB works on the logits' decision boundary).
    """
    norm = check_choice("norm", norm, TORCHATTACKS_NORMS)
    eps = check_eps(norm, eps)
    steps = check_int("steps", steps)
    n_classes = check_int("n_classes", n_classes, minimum=2)
    if not isinstance(targeted, bool):
        raise ValueError(f"targeted must be true or false, got {targeted!r}")
    restarts = check_int("restarts", restarts)
    alpha_max = check_number("alpha_max", alpha_max, minimum=0, strict_min=True)
    eta = check_number("eta", eta, minimum=0, strict_min=True)
    beta = check_number("beta", beta, minimum=0, strict_min=True)
    seed = check_int("seed", seed, minimum=0)
    n_targets = min(9, n_classes - 1)
    component = TorchattacksSpec(
        "FAB",
        {"norm": TORCHATTACKS_NORMS[norm], "eps": float(eps), "steps": steps,
         "n_restarts": restarts, "alpha_max": float(alpha_max), "eta": float(eta),
         "beta": float(beta), "seed": seed, "multi_targeted": targeted},
        {"n_target_classes": n_targets} if targeted else {},
    )
    record = {"norm": norm, "eps": float(eps), "steps": steps, "n_classes": n_classes,
              "targeted": targeted, "n_target_classes": n_targets if targeted else 0,
              "restarts": restarts, "alpha_max": float(alpha_max), "eta": float(eta),
              "beta": float(beta), "seed": seed}
    return TorchattacksAttack(model, "fab", component, record, seed=seed, n_classes=n_classes)
