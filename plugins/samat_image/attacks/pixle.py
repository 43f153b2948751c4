"""Pixle (Pomponi et al., 2022): black-box L0 attack rearranging pixels, via ``torchattacks.Pixle``.

Pixle copies patches of the image's own pixels to other locations, so every changed pixel takes
the value of some pixel of the clean image (outputs stay in [0, 1]). Each restart tries
``max_iterations`` patches and adds at most one of them to the image, so at most ``restarts``
patches of at most ``max(x_dimensions) * max(y_dimensions)`` pixels are changed. (torchattacks'
``update_each_iteration=True`` mode handles one image per call only and is not exposed.)
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from samat import AttackMismatch, LossFn, Probe, check_choice, check_int
from samat_image.attacks._base import (
    CHOOSE_ANOTHER,
    TorchattacksAttack,
    TorchattacksSpec,
    check_fit,
)

PIXEL_MAPPINGS = ("random", "similarity", "similarity_random", "distance", "distance_random")


def _check_dimensions(name: str, value: int | float | Sequence[int | float]) -> tuple:
    """``(low, high)`` patch sizes: integers >= 1 are pixels, floats in (0, 1] image fractions."""
    pair = (value, value) if isinstance(value, int | float) else tuple(value)
    ok = len(pair) == 2 and all(
        (isinstance(d, int) and not isinstance(d, bool) and d >= 1)
        or (isinstance(d, float) and 0 < d <= 1)
        for d in pair
    )
    if not ok:
        raise ValueError(
            f"{name} must be a size or a (low, high) pair of sizes (integers >= 1 are pixels, "
            f"floats in (0, 1] fractions of the image), got {value!r}"
        )
    return pair


class PixleAttack(TorchattacksAttack):
    """torchattacks' Pixle, refused on non-square images (its pixel mapping swaps x and y)."""

    def check(self, probe: Probe) -> None:
        check_fit(probe, self.name)
        height, width = probe.x.shape[-2:]
        if height != width:
            raise AttackMismatch(f"pixle needs square images, but the task's are {height}x"
                                 f"{width}", fix=CHOOSE_ANOTHER)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        if x.ndim == 4 and x.shape[-1] != x.shape[-2]:
            raise ValueError(f"pixle needs square images, got {x.shape[-2]}x{x.shape[-1]}")
        return super().__call__(x, y)


def pixle(
    model: nn.Module,
    loss_fn: LossFn | None = None,
    *,
    max_iterations: int = 5,
    restarts: int = 20,
    x_dimensions: int | float | Sequence[int | float] = (2, 10),
    y_dimensions: int | float | Sequence[int | float] = (2, 10),
    pixel_mapping: str = "random",
    seed: int = 0,
) -> PixleAttack:
    """Pixle with ``max_iterations`` (the paper: at most 5) candidate patches per restart.

    Black-box: it only queries the model's softmax. Patch sizes and ``restarts`` are
    torchattacks' defaults. ``seed`` seeds the (numpy) sampling; ``loss_fn`` is not used.
    """
    max_iterations = check_int("max_iterations", max_iterations)
    restarts = check_int("restarts", restarts)
    x_dims = _check_dimensions("x_dimensions", x_dimensions)
    y_dims = _check_dimensions("y_dimensions", y_dimensions)
    pixel_mapping = check_choice("pixel_mapping", pixel_mapping, PIXEL_MAPPINGS)
    seed = check_int("seed", seed, minimum=0)
    component = TorchattacksSpec("Pixle", {
        "x_dimensions": x_dims, "y_dimensions": y_dims, "pixel_mapping": pixel_mapping,
        "restarts": restarts, "max_iterations": max_iterations, "update_each_iteration": False,
    })
    record = {"max_iterations": max_iterations, "restarts": restarts,
              "x_dimensions": list(x_dims), "y_dimensions": list(y_dims),
              "pixel_mapping": pixel_mapping, "seed": seed}
    return PixleAttack(model, "pixle", component, record, seed=seed)
