"""Auto-PGD (Croce & Hein, 2020) with the cross-entropy or DLR loss, via ``torchattacks.APGD``."""

from __future__ import annotations

from torch import nn

from samat import AttackMismatch, LossFn, Probe, check_choice, check_int, check_number
from samat_image.attacks._base import (
    TORCHATTACKS_NORMS,
    TorchattacksAttack,
    TorchattacksSpec,
    check_eps,
    check_fit,
)

DLR_CLASSES = 3
"""The DLR loss divides by the gap between the first and third largest logits."""


class APGDAttack(TorchattacksAttack):
    """torchattacks' APGD, refused on models with fewer than 3 classes under the DLR loss."""

    def check(self, probe: Probe) -> None:
        classes = check_fit(probe, self.name)
        if self.record["loss"] == "dlr" and classes < DLR_CLASSES:
            raise AttackMismatch(f"dlr, but the DLR loss needs at least {DLR_CLASSES} classes "
                                 f"and the model has {classes}", key="loss", fix="set loss: ce")


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
) -> APGDAttack:
    """APGD-CE (``loss="ce"``) or APGD-DLR (``loss="dlr"``) in the ℓ∞ or ℓ2 ``eps`` ball.

    Defaults are the reference AutoAttack's APGD (100 steps, rho 0.75; 1 restart as in its
    standard version). ``loss_fn`` is not used: APGD optimises its own CE / DLR loss.
    """
    norm = check_choice("norm", norm, TORCHATTACKS_NORMS)
    eps = check_eps(norm, eps)
    steps = check_int("steps", steps)
    restarts = check_int("restarts", restarts)
    loss = check_choice("loss", loss, ("ce", "dlr"))
    rho = check_number("rho", rho, minimum=0, strict_min=True)
    seed = check_int("seed", seed, minimum=0)
    component = TorchattacksSpec("APGD", {
        "norm": TORCHATTACKS_NORMS[norm], "eps": float(eps), "steps": steps,
        "n_restarts": restarts, "loss": loss, "rho": float(rho), "seed": seed,
    })
    record = {"norm": norm, "eps": float(eps), "steps": steps, "restarts": restarts,
              "loss": loss, "rho": float(rho), "seed": seed}
    return APGDAttack(model, "apgd", component, record, seed=seed)
