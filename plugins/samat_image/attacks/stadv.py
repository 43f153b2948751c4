"""Spatially transformed adversarial examples (StAdv; Xiao et al., ICLR 2018), bounded flow.

A per-pixel flow field ``f`` of shape ``(N, 2, H, W)``, in pixels (channel 0 horizontal, 1
vertical), moves where each output pixel is read from: ``x_adv(p) = x(p + f(p))``, bilinearly
interpolated (:func:`warp`). The attack minimises, per example,
``max(Z_y - max_{i≠y} Z_i, -kappa) + tau * L_flow(f)`` on the logits ``Z`` (CW-style margin),
with ``L_flow`` the paper's smoothness loss (:func:`flow_smoothness`), by Adam, projecting every
flow component onto ``[-bound, bound]`` pixels after each step. Of all iterates (the clean
image first) it keeps, per example, the misclassified one with the smallest ``L_flow``, else the
one with the lowest margin; already misclassified images are thus returned unchanged.

Padding is ``"border"``: a flow pointing outside the image reads the nearest edge pixel, so the
output is a convex combination of input pixels (stays in [0, 1], no black pixels enter at the
edge, and a constant image is invariant to every flow). The grid uses ``align_corners=True``:
pixel ``j`` sits at normalised coordinate ``2j / (W - 1) - 1``, so zero flow is the identity.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samat import Attack, AttackMismatch, LossFn, Probe, check_int, check_number
from samat_image.attacks._base import CHOOSE_ANOTHER, attacking, check_fit, check_images

SMOOTHNESS_EPS = 1e-8
"""The ``ε`` inside the square root of ``L_flow`` (keeps its gradient finite at zero)."""


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """``x`` (``N, C, H, W``) read at ``p + flow(p)``; ``flow`` is ``(N, 2, H, W)`` in pixels."""
    n, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1).expand(n, h, w)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w).expand(n, h, w)
    grid = torch.stack(
        [(xs + flow[:, 0]) * (2 / (w - 1)) - 1, (ys + flow[:, 1]) * (2 / (h - 1)) - 1], dim=-1
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def flow_smoothness(flow: Tensor, eps: float = SMOOTHNESS_EPS) -> Tensor:
    """Per-example ``L_flow = Σ_p Σ_{q∈N(p)} sqrt(‖Δu‖² + ‖Δv‖² + ε)`` over 4-neighbours ``q``.

    Every adjacent pair ``(p, q)`` appears twice in the double sum (once from each side).
    """
    horizontal = flow[..., :, 1:] - flow[..., :, :-1]
    vertical = flow[..., 1:, :] - flow[..., :-1, :]
    pairs = [torch.sqrt((d**2).sum(dim=1) + eps).flatten(1).sum(1) for d in (horizontal, vertical)]
    return 2 * (pairs[0] + pairs[1])


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """``Z_y - max_{i≠y} Z_i`` per example (negative means misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return true - others


class StAdv(Attack):
    """Bounded-flow StAdv (module docstring); the last flow field is kept in ``last_flow``."""

    name = "stadv"

    def __init__(
        self, model: nn.Module, bound: float, tau: float, steps: int, lr: float, kappa: float
    ) -> None:
        self.model = model
        self.bound = bound
        self.tau = tau
        self.steps = steps
        self.lr = lr
        self.kappa = kappa
        self.last_flow: Tensor | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bound": self.bound,
            "bound_unit": "pixels, per flow component",
            "tau": self.tau,
            "steps": self.steps,
            "lr": self.lr,
            "kappa": self.kappa,
            "optimizer": "adam",
            "loss": "margin + tau * flow smoothness",
            "interpolation": "bilinear",
            "padding": "border",
            "library": "samat",
        }

    def check(self, probe: Probe) -> None:
        check_fit(probe, self.name)
        if min(probe.x.shape[-2:]) < 2:
            raise AttackMismatch(f"stadv needs images of at least 2x2 pixels, but the task's "
                                 f"are {probe.x.shape[-2]}x{probe.x.shape[-1]}",
                                 fix=CHOOSE_ANOTHER)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        check_images(x, y)
        if min(x.shape[-2:]) < 2:
            raise ValueError(f"stadv needs images of at least 2x2 pixels, got {tuple(x.shape)}")
        x, y = x.detach(), y.detach()
        n, _, h, w = x.shape
        with attacking(self.model, x.device, seed=None):
            flow = torch.zeros(n, 2, h, w, device=x.device, dtype=x.dtype, requires_grad=True)
            optimizer = torch.optim.Adam([flow], lr=self.lr)
            with torch.no_grad():  # the clean image is the zero-flow iterate, exactly
                logits = self.model(x)
                best, best_flow = x.clone(), torch.zeros_like(flow)
                best_fooled = logits.argmax(1) != y
                best_margin = margin(logits, y)
                best_smooth = flow_smoothness(best_flow)
            for step in range(self.steps + 1):
                x_adv = warp(x, flow)
                logits = self.model(x_adv)
                m = margin(logits, y)
                smooth = flow_smoothness(flow)
                with torch.no_grad():
                    fooled = logits.argmax(1) != y
                    better = torch.where(
                        fooled, ~best_fooled | (smooth < best_smooth),
                        ~best_fooled & (m < best_margin),
                    )
                    best[better] = x_adv[better]
                    best_flow[better] = flow[better]
                    best_fooled |= better & fooled
                    best_smooth = torch.where(better, smooth, best_smooth)
                    best_margin = torch.where(better, m, best_margin)
                if step == self.steps:
                    break
                loss = (m.clamp_min(-self.kappa) + self.tau * smooth).sum()
                flow.grad = torch.autograd.grad(loss, flow)[0]
                optimizer.step()
                with torch.no_grad():
                    flow.clamp_(-self.bound, self.bound)
        self.last_flow = best_flow
        return best.clamp(0.0, 1.0)


def stadv(
    model: nn.Module,
    loss_fn: LossFn | None = None,
    *,
    bound: float = 1.0,
    tau: float = 0.05,
    steps: int = 100,
    lr: float = 0.05,
    kappa: float = 0.0,
) -> StAdv:
    """StAdv with every flow component clipped to ``±bound`` pixels (Xiao et al.: unbounded).

    ``tau`` weighs the smoothness loss (0.05 as Xiao et al.); ``steps`` Adam steps of learning
    rate ``lr`` (pixels); ``kappa`` is the CW confidence. Deterministic (no random start).
    ``loss_fn`` is not used: StAdv's adversarial loss is the margin on the logits.
    """
    bound = check_number("bound", bound, minimum=0, strict_min=True)
    tau = check_number("tau", tau, minimum=0, finite=False)
    steps = check_int("steps", steps)
    lr = check_number("lr", lr, minimum=0, strict_min=True)
    kappa = check_number("kappa", kappa, minimum=0, finite=False)
    return StAdv(model, bound, tau, steps, lr, kappa)
