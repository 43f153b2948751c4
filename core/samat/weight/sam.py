"""Sharpness-Aware Minimization (Foret et al., 2021) and ASAM (Kwon et al., 2021).

Drop-in compatible with the widely copied https://github.com/davda54/sam API, plus exact weight
restoration, a single saved copy of the weights, ``torch.amp.GradScaler`` support and
BatchNorm-statistics freezing for the second pass (in every calling style).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

from samat.batchnorm import frozen_bn_stats

_EPS = 1e-12

_PROTOCOL = (
    "SAM needs two forward/backward passes per step: either call first_step(), run the second "
    "forward/backward, then second_step() (or scaler.step(sam) under GradScaler); or run the "
    "first forward/backward and then call step(closure) with a closure that re-runs "
    "forward/backward and returns the loss."
)


def _norm(t: Tensor) -> Tensor:
    """L2 norm accumulated in at least float32."""
    return torch.linalg.vector_norm(t, dtype=torch.promote_types(t.dtype, torch.float32))


def _grouped(*lists: list[Tensor]) -> list[tuple[list[Tensor], ...]]:
    """Parallel ``lists`` split by the (device, dtype) of the first list's tensors, in order:
    the batches ``torch._foreach_*`` ops run as one multi-tensor kernel."""
    batches: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], ...]] = {}
    for tensors in zip(*lists, strict=True):
        batch = batches.setdefault((tensors[0].device, tensors[0].dtype), tuple([] for _ in lists))
        for out, t in zip(batch, tensors, strict=True):
            out.append(t)
    return list(batches.values())


def _ascend(params: list[Tensor], grads: list[Tensor], scale: float, adaptive: bool) -> None:
    """``w += scale * g``, or ``w += scale * w**2 * g`` (one temporary list) when adaptive."""
    if not adaptive:
        torch._foreach_add_(params, grads, alpha=scale)
        return
    e = torch._foreach_mul(params, params)
    torch._foreach_mul_(e, grads)
    torch._foreach_mul_(e, scale)
    torch._foreach_add_(params, e)


def _with_grad(group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
    """The parameters of ``group`` that have a gradient, and those gradients."""
    params = [p for p in group["params"] if p.grad is not None]
    return params, [p.grad for p in params]


class SAM(Optimizer):
    """SAM/ASAM wrapper around any base optimizer (davda54/sam compatible).

    ``param_groups`` and ``state`` are the base optimizer's own objects, so LR schedulers built
    on the SAM object drive the base optimizer. ``rho`` and ``adaptive`` are per-group
    defaults. The ascent step uses one gradient norm over all groups:
    ``e = rho * g / ||g||``, or with ``adaptive=True`` ``e = rho * w**2 * g / || |w| * g ||``.
    Pass ``model`` to freeze its BatchNorm running statistics from ``first_step`` until the
    step ends (``second_step``, ``step()`` as called by ``GradScaler.step``, or the end of
    ``step(closure)``), so they are updated once per step, by the first (clean) pass only.
    """

    # GradScaler.step then hands us the scale and the inf check instead of skipping step(), so
    # the weights can be restored even when the update is skipped.
    _step_supports_amp_scaling = True

    def __init__(
        self,
        params: ParamsT,
        base_optimizer: Callable[..., Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        for group in self.param_groups:
            if not group["rho"] > 0:
                raise ValueError(f"rho must be > 0, got {group['rho']}")
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults.update(self.base_optimizer.defaults)
        self.model = model
        self.grad_norm = math.nan
        """The gradient norm of the last ``first_step`` (the ascent's ``||g||``)."""
        self._bn_frozen: ExitStack | None = None
        self._saved_weights: list[tuple[Tensor, Tensor]] | None = None
        # one copy of the weights, reused every step (re-allocating it costs ~3% of a step)
        self._copies: dict[Tensor, Tensor] = {}

    @property
    def _saved(self) -> list[tuple[Tensor, Tensor]] | None:
        """``(parameter, saved copy)`` pairs while a step is in progress, else ``None``.

        Setting it starts or ends the step, and with it the freezing of ``model``'s BatchNorm
        statistics (so subclasses that save the weights themselves get it too).
        """
        return self._saved_weights

    @_saved.setter
    def _saved(self, saved: list[tuple[Tensor, Tensor]] | None) -> None:
        self._saved_weights = saved
        if saved is None:
            frozen, self._bn_frozen = self._bn_frozen, None
            if frozen is not None:
                frozen.close()  # exactly once per step
        elif self.model is not None and self._bn_frozen is None:
            self._bn_frozen = ExitStack()
            self._bn_frozen.enter_context(frozen_bn_stats(self.model))

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Save the weights and move them to the (approximate) worst case ``w + e``.

        The direction is invariant to the gradient's scale, so GradScaler-scaled gradients are
        fine. With a non-finite gradient norm the weights are not perturbed (``e = 0``) but the
        step is still in progress. With ``model``, its BatchNorm statistics stay frozen until
        the step ends.
        """
        if self._saved is not None:
            raise RuntimeError("first_step() called twice without second_step() in between")
        params = [p for group in self.param_groups for p in _with_grad(group)[0]]
        copies = [self._buffer(p) for p in params]
        for ps, cs in _grouped(params, copies):
            torch._foreach_copy_(cs, ps)
        self._saved = list(zip(params, copies, strict=True))
        grad_norm = self.grad_norm = self._grad_norm().item()
        if math.isfinite(grad_norm):
            for group in self.param_groups:
                scale = group["rho"] / (grad_norm + _EPS)
                for ps, gs in _grouped(*_with_grad(group)):
                    _ascend(ps, gs, scale, group["adaptive"])
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def abort_step(self) -> None:
        """End a step begun by ``first_step`` without any update: the weights are restored
        exactly, BatchNorm statistics unfrozen and the gradients cleared (e.g. when the loss
        at the perturbed weights is not finite)."""
        if self._saved is not None:
            self._restore()
        self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore the saved weights exactly, then take the base optimizer's step."""
        self._restore()
        self.base_optimizer.step()
        # Tells torch LR schedulers that the optimizer stepped (step() sets it via their wrapper).
        self._opt_called = True
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Second half of a SAM step (``second_step``), or a whole step given a closure.

        With ``closure`` (forward + backward without zero_grad, returning the loss), the first
        forward/backward must already have been run: this does ``first_step(zero_grad=True)``,
        ``closure()`` (BatchNorm statistics frozen if ``model`` was given), ``second_step()``
        and returns the closure's loss; if the closure raises, the step is abandoned (weights
        restored, statistics unfrozen, no base step) and the exception propagates. Without it,
        a ``first_step`` must be in progress; under ``scaler.step(sam)`` the weights are always
        restored, the gradients unscaled, and the base step skipped if the scaler found inf/NaN
        gradients.
        """
        if closure is not None:
            self.first_step(zero_grad=True)
            try:
                with torch.enable_grad():
                    loss = closure()
            except BaseException:
                self._restore()
                raise
            self.second_step()
            return loss
        if self._saved is None:
            raise RuntimeError(_PROTOCOL)
        found_inf: Tensor | None = getattr(self, "found_inf", None)
        if found_inf is None:
            self.second_step()
            return None
        # Called by GradScaler.step(), which set found_inf and grad_scale (None if already
        # unscaled by scaler.unscale_) and reads the inf check itself in update().
        self._restore()
        if not found_inf.item():
            grad_scale: Tensor | None = getattr(self, "grad_scale", None)
            if grad_scale is not None:
                self._unscale_grads(grad_scale)
            self.base_optimizer.step()
        return None

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict (its param_groups carry ``rho`` and ``adaptive``)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the base optimizer and re-link the shared ``param_groups`` and ``state``."""
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    def _grad_norm(self) -> Tensor:
        """One L2 norm over all groups of ``g`` (or ``|w| * g`` for adaptive groups)."""
        device = self.param_groups[0]["params"][0].device
        norms: list[Tensor] = []
        for group in self.param_groups:
            for ps, gs in _grouped(*_with_grad(group)):
                dtype = torch.promote_types(gs[0].dtype, torch.float32)
                if group["adaptive"]:
                    weighted = torch._foreach_abs(ps)
                    torch._foreach_mul_(weighted, gs)  # |w| * g
                    gs = weighted
                norms += torch._foreach_norm(gs, 2, dtype=dtype)
        if not norms:
            return torch.zeros((), device=device)
        return _norm(torch.stack([n.to(device) for n in norms]))

    def _buffer(self, p: Tensor) -> Tensor:
        """``p``'s reusable buffer (uninitialised when new)."""
        buffer = self._copies.get(p)
        if buffer is None or buffer.shape != p.shape or buffer.dtype != p.dtype \
                or buffer.device != p.device:
            buffer = self._copies[p] = torch.empty_like(p, memory_format=torch.preserve_format)
        return buffer

    def _copy_of(self, p: Tensor) -> Tensor:
        """``p``'s values in its reusable buffer (for subclasses saving one tensor at a time)."""
        return self._buffer(p).copy_(p)

    def _restore(self) -> None:
        """Copy the saved weights back and end the step (``_saved = None``)."""
        if self._saved is None:
            raise RuntimeError(_PROTOCOL)
        params, olds = [p for p, _ in self._saved], [old for _, old in self._saved]
        for ps, saved in _grouped(params, olds):
            torch._foreach_copy_(ps, saved)
        self._saved = None

    def _unscale_grads(self, grad_scale: Tensor) -> None:
        inv_scale = grad_scale.double().reciprocal().float()
        for group in self.param_groups:
            for (gs,) in _grouped(_with_grad(group)[1]):
                torch._foreach_mul_(gs, inv_scale.to(gs[0].device))
