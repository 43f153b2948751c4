"""Evaluation attacks of the image-classification plugin (import-light: no torch here).

``ATTACKS`` lists ``(registered name, lazy "module:attr" factory path, one-line description,
example)``; the plugin registers each with samat's ``register(name, path, description,
example=example)``. An example builds a small, fast instance (the contract tests run each on a
batch of the digits task): few steps, queries and restarts, and budgets large enough to fool
an untrained model, not the reference settings.
"""

from __future__ import annotations

from typing import Any

_PKG = "samat_image.attacks"

_EPS = 0.1

ATTACKS: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "autoattack",
        f"{_PKG}.autoattack:autoattack",
        "AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square 5000) at the reference strength",
        {"eps": _EPS, "version": "cheap"},
    ),
    ("apgd", f"{_PKG}.apgd:apgd", "Auto-PGD (APGD-CE or APGD-DLR), torchattacks",
     {"eps": _EPS, "steps": 5}),
    ("fab", f"{_PKG}.fab:fab", "Fast Adaptive Boundary attack (untargeted or FAB-T), torchattacks",
     {"eps": 3.0, "steps": 20}),
    ("square", f"{_PKG}.square:square", "Square attack (black-box, score-based), torchattacks",
     {"eps": _EPS, "n_queries": 20}),
    ("pixle", f"{_PKG}.pixle:pixle", "Pixle pixel-rearranging black-box attack, torchattacks",
     {"max_iterations": 2, "restarts": 2}),
    (
        "stadv",
        f"{_PKG}.stadv:stadv",
        "Spatially transformed adversarial examples (bounded per-pixel flow, margin + smoothness)",
        {"steps": 5},
    ),
]

__all__ = ["ATTACKS"]
