"""AutoAttack (Croce & Hein, 2020) built from torchattacks' components at the reference strength.

``torchattacks.AutoAttack`` runs APGD with 10 steps and ``n_classes - 1`` target classes; the
reference implementation (fra31/auto-attack, ``version='standard'``) runs, for ℓ∞ and ℓ2:

==========  ===========================================================================
apgd-ce     APGD, CE loss, 100 steps, 1 restart, rho 0.75
apgd-t      APGD-T (targeted DLR), 100 steps, 1 restart, 9 target classes, rho 0.75
fab-t       FAB-T, 100 steps, 1 restart, 9 target classes, alpha_max 0.1, eta 1.05, beta 0.9
square      Square, 5000 queries, 1 restart, p_init 0.8, margin loss, no rescaled schedule
==========  ===========================================================================

each on the points still robust after the previous ones (worst case per example), which is what
:class:`AutoAttack` does. ``version="cheap"`` is a clearly weaker, much faster stand-in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samat import Attack, LossFn, Probe, check_choice, check_int
from samat_image.attacks._base import (
    TORCHATTACKS_NORMS,
    TorchattacksSpec,
    attacking,
    check_eps,
    check_fit,
    check_images,
    check_n_classes,
    library_version,
)

VERSIONS = ("standard", "cheap")
MIN_CLASSES = 4
"""APGD-T's targeted DLR loss reads the four largest logits."""
CHEAP_STEPS = 20
CHEAP_TARGETS = 3


def components(norm: str, eps: float, version: str, n_classes: int, seed: int) -> list[
    tuple[str, TorchattacksSpec]
]:
    """The ``(label, component)`` sequence of an AutoAttack version."""
    common = {"norm": TORCHATTACKS_NORMS[norm], "eps": eps, "seed": seed}
    if version == "cheap":
        return [
            ("apgd-ce", TorchattacksSpec("APGD", {**common, "steps": CHEAP_STEPS,
                                                  "n_restarts": 1, "loss": "ce", "rho": 0.75})),
            ("apgd-t", TorchattacksSpec("APGDT", {**common, "steps": CHEAP_STEPS,
                                                  "n_restarts": 1, "rho": 0.75},
                                        {"n_target_classes": min(CHEAP_TARGETS, n_classes - 1)})),
        ]
    n_targets = min(9, n_classes - 1)
    return [
        ("apgd-ce", TorchattacksSpec("APGD", {**common, "steps": 100, "n_restarts": 1,
                                              "loss": "ce", "rho": 0.75})),
        ("apgd-t", TorchattacksSpec("APGDT", {**common, "steps": 100, "n_restarts": 1,
                                              "rho": 0.75},
                                    {"n_target_classes": n_targets})),
        ("fab-t", TorchattacksSpec("FAB", {**common, "steps": 100, "n_restarts": 1,
                                           "alpha_max": 0.1, "eta": 1.05, "beta": 0.9,
                                           "multi_targeted": True},
                                   {"n_target_classes": n_targets})),
        ("square", TorchattacksSpec("Square", {**common, "n_queries": 5000, "n_restarts": 1,
                                               "p_init": 0.8, "loss": "margin",
                                               "resc_schedule": False})),
    ]


class AutoAttack(Attack):
    """Runs the components in order, each only on the examples still correctly classified."""

    name = "autoattack"

    def __init__(
        self, model: nn.Module, norm: str, eps: float, version: str, n_classes: int, seed: int
    ) -> None:
        self.model = model
        self.norm = norm
        self.eps = eps
        self.version = version
        self.n_classes = n_classes
        self.seed = seed
        self.components = components(norm, eps, version, n_classes, seed)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "norm": self.norm,
            "eps": self.eps,
            "version": self.version,
            "n_classes": self.n_classes,
            "seed": self.seed,
            "components": [{"attack": label, **c.describe()} for label, c in self.components],
            "library": "torchattacks",
            "library_version": library_version("torchattacks"),
        }

    def check(self, probe: Probe) -> None:
        check_fit(probe, self.name, self.n_classes, MIN_CLASSES, " (APGD-T's targeted DLR loss)")

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        check_images(x, y)
        x, y = x.detach(), y.detach()
        with attacking(self.model, x.device, self.seed):
            with torch.no_grad():
                logits = self.model(x)
            check_n_classes(logits, self.n_classes)
            robust = logits.argmax(1) == y
            x_adv = x.clone()
            for _, component in self.components:
                idx = robust.nonzero().flatten()
                if not idx.numel():
                    break
                adv = component.build(self.model, x.device)(x[idx], y[idx]).detach()
                with torch.no_grad():
                    fooled = self.model(adv).argmax(1) != y[idx]
                x_adv[idx[fooled]] = adv[fooled].to(x.dtype)
                robust[idx[fooled]] = False
        return x_adv


def autoattack(
    model: nn.Module,
    loss_fn: LossFn | None = None,
    *,
    norm: str = "linf",
    eps: float,
    version: str = "standard",
    n_classes: int = 10,
    seed: int = 0,
) -> AutoAttack:
    """AutoAttack in the ℓ∞ or ℓ2 ``eps`` ball.

    ``version="standard"`` is the reference standard AutoAttack (module docstring);
    ``version="cheap"`` runs APGD-CE and APGD-T (3 targets) with 20 steps each only — an upper
    bound on the standard version's robust accuracy, never to be reported as AutoAttack.
    ``n_classes`` must equal the model's number of outputs (at least 4: the DLR loss needs it);
    ``min(9, n_classes - 1)`` target classes are used. ``loss_fn`` is not used.
    """
    norm = check_choice("norm", norm, TORCHATTACKS_NORMS)
    eps = check_eps(norm, eps)
    version = check_choice("version", version, VERSIONS)
    n_classes = check_int("n_classes", n_classes, minimum=MIN_CLASSES)
    seed = check_int("seed", seed, minimum=0)
    return AutoAttack(model, norm, float(eps), version, n_classes, seed)
