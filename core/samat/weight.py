"""Weight perturbations: the optimisation step itself — a plain step, SAM or ASAM."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from samat.interfaces import LossFn, NonFiniteStep, StepResult, WeightPerturbation
from samat.optim import SAM, frozen_bn_stats

ASCENTS = ("global", "replica")


def detach(output: Any) -> Any:
    """``output.detach()`` for a tensor, else ``output`` itself."""
    return output.detach() if isinstance(output, Tensor) else output


def finite_or_abort(step: WeightPerturbation, sam: SAM, what: str, value: Tensor | float
                    ) -> None:
    """``step.check_finite(what, value)``; on failure SAM's step in progress is abandoned
    (weights restored exactly) before :class:`NonFiniteStep` propagates."""
    try:
        step.check_finite(what, value)
    except NonFiniteStep:
        sam.abort_step()
        raise


def ascend_checked(step: WeightPerturbation, sam: SAM) -> None:
    """``sam.first_step(zero_grad=True)``, then check its gradient norm (not under a GradScaler,
    which expects and skips non-finite gradients itself)."""
    sam.first_step(zero_grad=True)
    if step.scaler is None:
        finite_or_abort(step, sam, "gradient norm", sam.grad_norm)


class PlainStep(WeightPerturbation):
    """No weight perturbation: one forward/backward and a step of the base optimizer."""

    name = "none"

    def __init__(
        self, params: Any, base_optimizer_cls: type[torch.optim.Optimizer], base_kwargs: dict
    ) -> None:
        self.optimizer = base_optimizer_cls(params, **base_kwargs)

    def step(self, model: nn.Module, loss_fn: LossFn, x: Any, y: Tensor) -> StepResult:
        loss, output = self.clean_pass(model, loss_fn, x, y)
        self.apply_step()
        return StepResult(loss.detach(), detach(output))


class SAMStep(WeightPerturbation):
    """SAM (Foret et al. 2021) or, with ``adaptive=True``, ASAM (Kwon et al. 2021).

    Ascent on a clean gradient (zeroed before the first backward), descent from the perturbed
    weights; only the first pass updates BatchNorm running statistics.

    Under data parallelism ``ascent="global"`` all-reduces the first gradient, so every replica
    ascends along the global batch's gradient (the same step as one process with that batch);
    ``ascent="replica"`` runs the first backward under ``model.no_sync()``, so each replica
    ascends along its own batch's gradient (m-sharpness with m = the per-replica batch). The
    second gradient is always all-reduced. In one process both are the same.
    """

    name = "sam"

    def __init__(
        self,
        params: Any,
        base_optimizer_cls: type[torch.optim.Optimizer],
        base_kwargs: dict,
        rho: float = 0.05,
        adaptive: bool = False,
        ascent: str = "global",
    ) -> None:
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        if ascent not in ASCENTS:
            raise ValueError(f"ascent must be one of {', '.join(ASCENTS)}, got {ascent!r}")
        self.rho, self.adaptive, self.ascent = float(rho), bool(adaptive), ascent
        self.optimizer = SAM(params, base_optimizer_cls, rho=rho, adaptive=adaptive, **base_kwargs)

    def step(self, model: nn.Module, loss_fn: LossFn, x: Any, y: Tensor) -> StepResult:
        sam = self.optimizer
        no_sync = getattr(model, "no_sync", None)  # DistributedDataParallel's
        with no_sync() if self.ascent == "replica" and no_sync else nullcontext():
            loss, output = self.clean_pass(model, loss_fn, x, y)
        ascend_checked(self, sam)  # the ascent direction ignores the gradient scale
        with frozen_bn_stats(model):
            perturbed = loss_fn(model(x), y)
        finite_or_abort(self, sam, "loss at the perturbed weights", perturbed)
        self.backward(perturbed)
        self.apply_step()  # SAM.step() restores w, then the base step (skipped on inf/NaN)
        sam.zero_grad(set_to_none=True)
        return StepResult(loss.detach(), detach(output))

    def describe(self) -> dict[str, Any]:
        described = {"name": "asam" if self.adaptive else "sam", "rho": self.rho,
                     "adaptive": self.adaptive}
        if self.ascent != "global":  # global ascent is the single-process step
            described["ascent"] = self.ascent
        return described


class ASAMStep(SAMStep):
    """ASAM (Kwon et al. 2021): SAM with the perturbation scaled element-wise by |w|."""

    def __init__(
        self,
        params: Any,
        base_optimizer_cls: type[torch.optim.Optimizer],
        base_kwargs: dict,
        rho: float = 0.5,
        ascent: str = "global",
    ) -> None:
        super().__init__(params, base_optimizer_cls, base_kwargs, rho=rho, adaptive=True,
                         ascent=ascent)
