"""Square attack (Andriushchenko et al., 2020), score-based black-box: ``torchattacks.Square``."""

from __future__ import annotations

from torch import nn

from samat import LossFn, check_choice, check_int, check_number
from samat_image.attacks._base import (
    TORCHATTACKS_NORMS,
    TorchattacksAttack,
    TorchattacksSpec,
    check_eps,
)


def square(
    model: nn.Module,
    loss_fn: LossFn | None = None,
    *,
    norm: str = "linf",
    eps: float,
    n_queries: int = 5000,
    restarts: int = 1,
    p_init: float = 0.8,
    loss: str = "margin",
    rescale_schedule: bool = False,
    seed: int = 0,
) -> TorchattacksAttack:
    """Square attack in the ℓ∞ or ℓ2 ``eps`` ball with at most ``n_queries`` queries per example.

    Defaults are the reference AutoAttack's Square (5000 queries, p_init 0.8, margin loss, no
    rescaled schedule); torchattacks' own default rescales the schedule. ``loss_fn`` is not used.
    """
    norm = check_choice("norm", norm, TORCHATTACKS_NORMS)
    eps = check_eps(norm, eps)
    n_queries = check_int("n_queries", n_queries)
    restarts = check_int("restarts", restarts)
    p_init = check_number("p_init", p_init, minimum=0, strict_min=True)
    loss = check_choice("loss", loss, ("margin", "ce"))
    if not isinstance(rescale_schedule, bool):
        raise ValueError(f"rescale_schedule must be true or false, got {rescale_schedule!r}")
    seed = check_int("seed", seed, minimum=0)
    component = TorchattacksSpec("Square", {
        "norm": TORCHATTACKS_NORMS[norm], "eps": float(eps), "n_queries": n_queries,
        "n_restarts": restarts, "p_init": float(p_init), "loss": loss,
        "resc_schedule": rescale_schedule, "seed": seed,
    })
    record = {"norm": norm, "eps": float(eps), "n_queries": n_queries, "restarts": restarts,
              "p_init": float(p_init), "loss": loss, "rescale_schedule": rescale_schedule,
              "seed": seed}
    return TorchattacksAttack(model, "square", component, record, seed=seed)
