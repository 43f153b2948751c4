"""samat: what SAM, adversarial training or plain SGD/Adam do to clean and robust performance.

Public API (imported lazily so that ``import samat`` and the CLI start fast)::

    from samat import SAM, create_attack, Task, hookimpl
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "SAM": "samat.optim",
    "ESAM": "samat.optim",
    "LookSAM": "samat.optim",
    "frozen_bn_stats": "samat.optim",
    "create_attack": "samat.build",
    "create_task": "samat.build",
    "create_input_perturbation": "samat.build",
    "create_weight_perturbation": "samat.build",
    "Task": "samat.interfaces",
    "Attack": "samat.interfaces",
    "InputPerturbation": "samat.interfaces",
    "WeightPerturbation": "samat.interfaces",
    "Metric": "samat.interfaces",
    "Accuracy": "samat.interfaces",
    "StepResult": "samat.interfaces",
    "hookimpl": "samat.hookspecs",
    "SamatError": "samat.errors",
    "load_recipe": "samat.recipe",
    "run": "samat.run",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'samat' has no attribute {name!r}")
