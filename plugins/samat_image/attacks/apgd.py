"""Auto-PGD (Croce & Hein, 2020) with the cross-entropy or DLR loss, via ``torchattacks.APGD``."""

from __future__ import annotations

from torch import nn

from samat.interfaces import LossFn
from samat_image.attacks._base import (
    NORMS,
    Component,
    TorchattacksAttack,
    check_choice,
    check_eps,
    check_int,
    check_norm,
    check_positive,
)


def apgd(
    model: nn.Module,
    loss_fn: LossFn | None = None,
    *,
    norm: str = "linf",
    eps: float,
    steps: int = 100,
    restarts: int = 1,
    loss: str = "ce",
    rho: float = 0.75,
    seed: int = 0,
) -> TorchattacksAttack:
    """APGD-CE (``loss="ce"``) or APGD-DLR (``loss="dlr"``) in the ℓ∞ or ℓ2 ``eps`` ball.

    Defaults are the reference AutoAttack's APGD (100 steps, rho 0.75; 1 restart as in its
    standard version). ``loss_fn`` is not used: APGD optimises its own CE / DLR loss.
    """
    check_norm(norm)
    check_eps(norm, eps)
    check_int("steps", steps)
    check_int("restarts", restarts)
    check_choice("loss", loss, ("ce", "dlr"))
    check_positive("rho", rho)
    check_int("seed", seed, minimum=0)
    component = Component("APGD", {
        "norm": NORMS[norm], "eps": float(eps), "steps": steps, "n_restarts": restarts,
        "loss": loss, "rho": float(rho), "seed": seed,
    })
    record = {"norm": norm, "eps": float(eps), "steps": steps, "restarts": restarts,
              "loss": loss, "rho": float(rho), "seed": seed}
    return TorchattacksAttack(model, "apgd", component, record, seed=seed)
