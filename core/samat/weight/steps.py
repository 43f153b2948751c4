"""Weight perturbations: the optimisation step itself — a plain step, SAM, ASAM, ESAM (Du et
al. 2022) or LookSAM (Liu et al. 2022). Every SAM-family step freezes BatchNorm statistics after
the first pass and checks what it computes before applying it."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from samat.batchnorm import frozen_bn_stats
from samat.checks import check_choice, check_fraction
from samat.errors import SamatError
from samat.interfaces import LossFn, NonFiniteStep, StepResult, Task, WeightPerturbation
from samat.weight.esam import ESAM
from samat.weight.looksam import LookSAM
from samat.weight.sam import SAM

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
        check_choice("ascent", ascent, ASCENTS)
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


def _subset(x: Any, index: Tensor, n: int) -> Any:
    """Examples ``index`` of a batch of ``n``: tensors along dim 0, mappings/tuples/lists of them
    recursively, a list of ``n`` other items (e.g. raw texts) element-wise."""
    if isinstance(x, Tensor):
        return x[index]
    if isinstance(x, Mapping):
        return {key: _subset(value, index, n) for key, value in x.items()}
    if isinstance(x, list | tuple):
        if len(x) == n and not any(isinstance(v, Tensor | Mapping | list | tuple) for v in x):
            return [x[i] for i in index.tolist()]
        return type(x)(_subset(value, index, n) for value in x)
    raise SamatError(f"esam: cannot select examples from a batch of type {type(x).__name__}; "
                     "use gamma: 1")


def _check_example_losses(task: Task | None) -> None:
    """Raise unless ``task`` has per-example losses consistent with its loss."""
    if task is None:
        raise ValueError("gamma < 1 (sharpness-sensitive data selection) needs the task's "
                         "per-example losses: pass task=")
    cls = type(task)
    if cls.loss is not Task.loss and cls.example_losses is Task.example_losses:
        raise ValueError(f"gamma < 1 needs per-example losses, but task {cls.__name__} "
                         "overrides loss() and not example_losses(); use gamma: 1 or add it")


class ESAMStep(WeightPerturbation):
    """ESAM: SAM with stochastic weight perturbation (``beta``) and sharpness-sensitive data
    selection (``gamma``); ``beta = gamma = 1`` is SAM.

    First pass at ``w`` (loss and output reported); ascent to ``w + (rho/beta) m*g/||g||``
    (:class:`samat.weight.ESAM`); with ``gamma < 1`` a no-grad forward at ``w + e`` gives each
    example's sharpness ``L_i(w + e) - L_i(w)`` (``task.example_losses``) and the descent
    forward/backward runs on the ``gamma`` fraction with the highest (task loss over that
    subset). Defaults are the ESAM paper's (rho 0.05, beta 0.6, gamma 0.5).
    """

    name = "esam"

    def __init__(
        self,
        params: Any,
        base_optimizer_cls: type[torch.optim.Optimizer],
        base_kwargs: dict,
        rho: float = 0.05,
        beta: float = 0.6,
        gamma: float = 0.5,
        task: Task | None = None,
    ) -> None:
        if check_fraction("gamma", gamma) < 1:
            _check_example_losses(task)
        self.optimizer = ESAM(params, base_optimizer_cls, rho=rho, beta=beta, gamma=gamma,
                              **base_kwargs)
        self.rho, self.task = float(rho), task

    def step(self, model: nn.Module, loss_fn: LossFn, x: Any, y: Tensor) -> StepResult:
        esam = self.optimizer
        loss, output = self.clean_pass(model, loss_fn, x, y)
        ascend_checked(self, esam)
        x_d, y_d = x, y
        if esam.gamma < 1:
            with torch.no_grad(), frozen_bn_stats(model):
                before = self._example_losses(detach(output), y)
                index = esam.select(before, self._example_losses(model(x), y))
            x_d, y_d = _subset(x, index, len(y)), y[index]
        with frozen_bn_stats(model):
            perturbed = loss_fn(model(x_d), y_d)
        finite_or_abort(self, esam, "loss at the perturbed weights", perturbed)
        self.backward(perturbed)
        self.apply_step()  # restores w, then the base step (skipped on inf/NaN under a scaler)
        esam.zero_grad(set_to_none=True)
        return StepResult(loss.detach(), detach(output))

    def _example_losses(self, output: Any, y: Tensor) -> Tensor:
        losses = self.task.example_losses(output, y)
        if losses.shape != (len(y),):
            raise SamatError(f"{type(self.task).__name__}.example_losses returned shape "
                             f"{tuple(losses.shape)}, expected ({len(y)},)")
        return losses.float()

    def describe(self) -> dict[str, Any]:
        esam = self.optimizer
        return {"name": self.name, "rho": self.rho, "beta": esam.beta, "gamma": esam.gamma}


class LookSAMStep(WeightPerturbation):
    """LookSAM: a SAM step every ``k`` steps, one forward/backward plus the stored orthogonal
    SAM direction (weight ``alpha``) in between (:class:`samat.weight.LookSAM`); ``k=1`` is SAM.
    Defaults: rho 0.05, k 5, alpha 0.7 (the LookSAM paper's)."""

    name = "looksam"

    def __init__(
        self,
        params: Any,
        base_optimizer_cls: type[torch.optim.Optimizer],
        base_kwargs: dict,
        rho: float = 0.05,
        k: int = 5,
        alpha: float = 0.7,
    ) -> None:
        self.optimizer = LookSAM(params, base_optimizer_cls, rho=rho, k=k, alpha=alpha,
                                 **base_kwargs)
        self.rho = float(rho)

    def step(self, model: nn.Module, loss_fn: LossFn, x: Any, y: Tensor) -> StepResult:
        look = self.optimizer
        loss, output = self.clean_pass(model, loss_fn, x, y)
        if look.sam_step_due:
            ascend_checked(self, look)
            with frozen_bn_stats(model):
                perturbed = loss_fn(model(x), y)
            finite_or_abort(self, look, "loss at the perturbed weights", perturbed)
            self.backward(perturbed)
        self.apply_step()
        look.zero_grad(set_to_none=True)
        return StepResult(loss.detach(), detach(output))

    def describe(self) -> dict[str, Any]:
        look = self.optimizer
        return {"name": self.name, "rho": self.rho, "k": look.k, "alpha": look.alpha}
