"""samat: what SAM, adversarial training or plain SGD/Adam do to clean and robust performance.

The public API — everything a script or a plugin needs — is exported here, imported lazily so
that ``import samat`` and the CLI start fast::

    from samat import SAM, create_attack, Task, hookimpl

Plugins use only these names (``from samat import ...``); every other module is internal.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # the contract: what a plugin implements and registers
    "Task": "samat.interfaces",
    "Metric": "samat.interfaces",
    "Accuracy": "samat.interfaces",
    "Attack": "samat.interfaces",
    "AttackMismatch": "samat.interfaces",
    "Measure": "samat.interfaces",
    "Probe": "samat.interfaces",
    "TextAttack": "samat.interfaces",
    "InputPerturbation": "samat.interfaces",
    "WeightPerturbation": "samat.interfaces",
    "StepResult": "samat.interfaces",
    "NonFiniteStep": "samat.interfaces",
    "LossFn": "samat.interfaces",
    "Bounds": "samat.interfaces",
    "hookimpl": "samat.hookspecs",
    "Register": "samat.hookspecs",
    "RegisterMetric": "samat.hookspecs",
    "RunStarted": "samat.events",
    "StepLogged": "samat.events",
    "EpochEnded": "samat.events",
    "EvalResult": "samat.events",
    "RunEnded": "samat.events",
    "event_scalars": "samat.events",
    "SamatError": "samat.errors",
    "MissingDataError": "samat.errors",
    "UnknownNameError": "samat.errors",
    # the duality: optimizers, one training step, building blocks by registered name
    "SAM": "samat.weight",
    "ESAM": "samat.weight",
    "LookSAM": "samat.weight",
    "frozen_bn_stats": "samat.batchnorm",
    "train_step": "samat.step",
    "attack_factory": "samat.perturb",
    "create_attack": "samat.factories",
    "create_task": "samat.factories",
    "create_input_perturbation": "samat.factories",
    "create_weight_perturbation": "samat.factories",
    "load_recipe": "samat.recipe",
    "run": "samat.runner",
    # exported models: rebuilt without data, weights read from safetensors
    "load_model": "samat.export",
    "model_from_spec": "samat.export",
    "read_model_spec": "samat.export",
    # helpers for plugins: files, randomness, names, parameter checks, figures, untrusted data
    "write_json": "samat.atomic",
    "write_text": "samat.atomic",
    "rng_state": "samat.seeding",
    "set_rng_state": "samat.seeding",
    "unknown_name_message": "samat.names",
    "did_you_mean": "samat.names",
    "check_int": "samat.checks",
    "check_number": "samat.checks",
    "check_fraction": "samat.checks",
    "check_choice": "samat.checks",
    "load_pickle": "samat.unpickle",
    "new_figure": "samat.figures",
    "save_figure": "samat.figures",
    "wrap_title": "samat.figures",
    "ReportRun": "samat.report",
}

_RENAMED = {"event_scalars": "scalars", "ReportRun": "Run", "load_pickle": "load",
            "read_model_spec": "read_spec"}
"""Exports whose name differs in their module."""

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'samat' has no attribute {name!r}")
