"""Evaluation attacks of the image-classification plugin (import-light: no torch here).

``ATTACKS`` lists ``(registered name, lazy "module:attr" factory path, one-line description)``;
the plugin registers each with samat's ``register(name, path, description)``.
"""

from __future__ import annotations

_PKG = "samat_image.attacks"

ATTACKS: list[tuple[str, str, str]] = [
    (
        "autoattack",
        f"{_PKG}.autoattack:autoattack",
        "AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square 5000) at the reference strength",
    ),
    ("apgd", f"{_PKG}.apgd:apgd", "Auto-PGD (APGD-CE or APGD-DLR), torchattacks"),
    ("fab", f"{_PKG}.fab:fab", "Fast Adaptive Boundary attack (untargeted or FAB-T), torchattacks"),
    ("square", f"{_PKG}.square:square", "Square attack (black-box, score-based), torchattacks"),
    ("pixle", f"{_PKG}.pixle:pixle", "Pixle pixel-rearranging black-box attack, torchattacks"),
    (
        "stadv",
        f"{_PKG}.stadv:stadv",
        "Spatially transformed adversarial examples (bounded per-pixel flow, margin + smoothness)",
    ),
]

__all__ = ["ATTACKS"]
