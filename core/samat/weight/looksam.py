"""LookSAM (Liu et al., "Towards Efficient and Scalable Sharpness-Aware Minimization", CVPR 2022).

Every ``k``-th step is a full SAM step that also stores the component of the SAM gradient ``g_s``
orthogonal to the clean gradient ``g``; the steps in between take one forward/backward and add
that stored component back, rescaled to the current gradient's norm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

from samat.checks import check_int, check_number
from samat.weight.sam import SAM

_DUE = (
    "LookSAM step {n} is a SAM step (every k={k}): run the first forward/backward, "
    "first_step(), the second forward/backward, then step() (see sam_step_due)."
)


def _dot(a: list[Tensor], b: list[Tensor]) -> float:
    """``sum_i <a_i, b_i>``: one BLAS dot per tensor (no temporaries), summed in float64."""
    return float(torch.stack([torch.dot(x.reshape(-1), y.reshape(-1)).double().cpu()
                              for x, y in zip(a, b, strict=True)]).sum())


def _norm(a: list[Tensor]) -> float:
    """``sqrt(sum_i ||a_i||^2)``."""
    return float(torch.stack([n.double().cpu() for n in torch._foreach_norm(a)]).norm())


class LookSAM(SAM):
    """SAM every ``k`` steps, the reused SAM direction in between (davda54-style API).

    Over the whole gradient vector (all groups): on a SAM step (``sam_step_due``: step count
    divisible by ``k``) the update uses ``g_s``, and ``g_v = g_s - ||g_s|| cos(g, g_s) g / ||g||``
    (= ``g_s - (g.g_s / ||g||^2) g``) is stored as the unit vector ``u = g_v / ||g_v||``. Other
    steps need no second pass: the base optimizer steps on ``g + alpha * ||g|| * u``, which is the
    paper's ``g + alpha * (||g|| / ||g_v||) g_v``. ``k=1`` is SAM. ``u`` and the step count are
    in :meth:`state_dict`, so resuming is exact.

    Protocol per step: forward/backward; if ``sam_step_due``: ``first_step()``, forward/backward
    at the perturbed weights; then ``step()`` (or ``scaler.step(looksam)``). ``step(closure)``
    does the SAM part itself when due. A non-finite ``g_v`` (fp16 overflow) keeps the previous
    ``u``; the step count advances on every step, also one GradScaler skips.
    """

    def __init__(
        self,
        params: ParamsT,
        base_optimizer: Callable[..., Optimizer],
        rho: float = 0.05,
        k: int = 5,
        alpha: float = 0.7,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        k, alpha = check_int("k", k), check_number("alpha", alpha, minimum=0, finite=False)
        super().__init__(params, base_optimizer, rho=rho, model=model, **kwargs)
        self.k, self.alpha, self.steps = k, alpha, 0
        self._clean: dict[Tensor, Tensor] = {}  # g during a SAM step
        self._direction: dict[Tensor, Tensor] = {}  # u
        self._spare: dict[Tensor, Tensor] = {}  # buffers reused for the next g (no allocation)
        self._pending = False  # a SAM step whose g_s is not captured yet

    @property
    def sam_step_due(self) -> bool:
        """Whether the coming step is a SAM step (needs ``first_step`` and a second pass)."""
        return self.steps % self.k == 0

    def _spare_for(self, p: Tensor) -> Tensor:
        """A buffer shaped like ``p`` that holds neither ``u`` nor a pending ``g``."""
        buffer = self._spare.pop(p, None)
        if buffer is None or buffer.shape != p.shape or buffer.dtype != p.dtype \
                or buffer.device != p.device:
            buffer = torch.empty_like(p, memory_format=torch.preserve_format)
        return buffer

    def _with_grad(self) -> list[tuple[dict[str, Any], Tensor]]:
        return [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Keep ``g`` (for ``g_v``), then SAM's ascent to ``w + e``."""
        if self._saved is None and self.k > 1:
            params = [p for _, p in self._with_grad()]
            self._clean = {p: self._spare_for(p) for p in params}
            if params:
                torch._foreach_copy_(list(self._clean.values()), [p.grad for p in params])
        super().first_step(zero_grad)
        self._pending = True

    @torch.no_grad()
    def abort_step(self) -> None:
        """SAM's :meth:`~samat.weight.SAM.abort_step`; the step does not count (the next one is
        a SAM step again)."""
        self._pending = False
        super().abort_step()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Store ``u`` from ``g_s`` (the current gradients), then SAM's restore and base step."""
        self._capture()
        super().second_step(zero_grad)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Finish a SAM step (or, given ``closure``, run it when due), else a reuse step."""
        if self._saved is not None:
            self._capture()
            return super().step()
        if closure is not None and self.sam_step_due:
            return super().step(closure)
        if self.sam_step_due:
            raise RuntimeError(_DUE.format(n=self.steps, k=self.k))
        self.steps += 1
        found_inf: Tensor | None = getattr(self, "found_inf", None)  # set by GradScaler.step
        if found_inf is not None and found_inf.item():
            return None
        grad_scale: Tensor | None = getattr(self, "grad_scale", None)
        if grad_scale is not None:
            self._unscale_grads(grad_scale)
        pairs = [(p.grad, self._direction[p]) for _, p in self._with_grad()
                 if p in self._direction]
        if pairs:
            weight = self.alpha * float(self._grad_norm())
            grads, directions = zip(*pairs, strict=True)
            torch._foreach_add_(list(grads), list(directions), alpha=weight)
        self.base_optimizer.step()
        return None

    def _capture(self) -> None:
        """``u = g_v / ||g_v||`` from the kept ``g`` and ``g_s`` in ``.grad`` (once per step)."""
        if not self._pending:
            return
        self._pending = False
        self.steps += 1
        clean, self._clean = self._clean, {}
        self._spare.update(clean)  # back to the pool unless it becomes the new direction
        pairs = [(c, p) for p, c in clean.items() if p.grad is not None]
        if not pairs:
            return
        g, g_s = [c for c, _ in pairs], [p.grad for _, p in pairs]
        squared = _norm(g) ** 2
        coef = _dot(g, g_s) / squared if squared > 0 else math.nan
        g_v = g  # computed in place of g
        torch._foreach_mul_(g_v, -coef)
        torch._foreach_add_(g_v, g_s)
        norm = _norm(g_v)
        if not (math.isfinite(coef) and math.isfinite(norm)):
            return
        if norm > 0:
            torch._foreach_div_(g_v, norm)
        else:
            torch._foreach_zero_(g_v)
        for c, (_, p) in zip(g_v, pairs, strict=True):
            old = self._direction.get(p)
            if old is not None:
                self._spare[p] = old
            else:
                self._spare.pop(p, None)
            self._direction[p] = c

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict plus ``looksam``: the step count and ``u`` (by the
        parameter indices the base state dict uses)."""
        state = self.base_optimizer.state_dict()
        params = [p for g in self.param_groups for p in g["params"]]
        direction = {i: self._direction[p].clone() for i, p in enumerate(params)
                     if p in self._direction}
        return {**state, "looksam": {"steps": self.steps, "direction": direction}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` wrote (a SAM state dict starts the count at 0)."""
        state_dict = dict(state_dict)
        extra = state_dict.pop("looksam", {"steps": 0, "direction": {}})
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        self.steps = int(extra["steps"])
        self._direction = {params[int(i)]: u.to(params[int(i)])
                           for i, u in extra["direction"].items()}
