"""Synthetic finished run directories (config.yaml + metrics.json) for report/plot tests, and
throwaway in-process plugins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from samat import plugins

FGSM = {"name": "fgsm", "eps": 1 / 255, "bounds": [0.0, 1.0], "mask": None}
PGD_LINF = {"name": "pgd", "norm": "linf", "eps": 1 / 255, "alpha": 0.25 / 255, "steps": 10,
            "random_start": True, "restarts": 1, "bounds": [0.0, 1.0], "mask": None}
PGD_L2 = {**PGD_LINF, "norm": "l2", "eps": 32 / 255, "alpha": 8 / 255}
CIFAR10 = {"name": "image_classification", "dataset": "cifar10", "root": "data",
           "model": "preactresnet18"}
SAM = {"name": "sam", "rho": 0.1, "adaptive": False}
AT = {"name": "pgd", "norm": "linf", "eps": 8 / 255, "alpha": 2 / 255, "steps": 10}


def make_run(
    path: Path,
    *,
    natural: float,
    attacks: dict[str, tuple[dict[str, Any], float]],
    seed: int = 0,
    task: dict[str, Any] | None = None,
    weight: dict[str, Any] | None = None,
    inp: dict[str, Any] | None = None,
    optimizer: dict[str, Any] | None = None,
    metric: str = "accuracy",
    attack_metric: str | None = None,
    report: dict[str, Any] | None = None,
    task_facts: dict[str, Any] | None = None,
    attack_fields: dict[str, dict[str, Any]] | None = None,
    measures: list[dict[str, Any]] | None = None,
    finished_at: str | None = None,
) -> Path:
    """A run directory as ``samat run`` leaves it; ``attacks`` maps label -> (attack, value),
    ``attack_fields`` label -> more keys of that attack's result (``n_examples``, ...);
    ``measures`` is the ``measures`` list (see :func:`measure`)."""
    task = task or CIFAR10
    config = {
        "task": task, "name": "synthetic", "description": "", "seed": seed, "device": "cpu",
        "output_dir": str(path),
        "train": {"epochs": 1, "batch_size": 128,
                  "optimizer": optimizer or {"name": "sgd", "lr": 0.1},
                  "weight_perturbation": weight or {"name": "none"},
                  "input_perturbation": inp or {"name": "none"}},
        "eval": {"batch_size": 256, "n_examples": None,
                 "attacks": [{"name": a["name"], "label": label} for label, (a, _) in
                             attacks.items()]},
    }
    key = attack_metric or metric
    results = [{"label": label, "attack": attack, key: value, "n_examples": 100,
                **(attack_fields or {}).get(label, {})}
               for label, (attack, value) in attacks.items()]
    values = [v for _, v in attacks.values()]
    metrics = {
        "recipe": {"path": "synthetic.yaml", "name": "synthetic"},
        "run_dir": str(path),
        "task": {"name": task["name"], "params": task, **(task_facts or {})},
        "metric": metric,
        "higher_is_better": True,
        "natural": {metric: natural, "n_examples": 100},
        "attacks": results,
        "average_under_attack": sum(values) / len(values) if values else None,
        "report": report or {},
        "seed": seed,
        "versions": {"samat_git": {"commit": "0123456789abcdef", "dirty": False}},
        **({"measures": measures} if measures is not None else {}),
        **({"finished_at": finished_at} if finished_at else {}),
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def measure(label: str, value: float, key: str = "sharpness", name: str = "sam_sharpness",
            n_examples: int = 512, seed: int = 0, **params: Any) -> dict[str, Any]:
    """A ``metrics.json`` measure entry as samat writes it: headline ``key`` = ``value``;
    ``params`` the measure's parameters (default: rho 0.05, l2, 5 steps); ``seed`` the run's,
    which samat passes on."""
    described = {"name": name, **(params or {"rho": 0.05, "norm": "l2", "steps": 5}),
                 "n_examples": n_examples, "seed": seed}
    values = {key: value, "loss": 0.3, "perturbed_loss": 0.3 + value}
    if name == "hessian":
        values = {key: value, "trace": 10 * value}
    return {"label": label, "measure": described, "key": key, "value": value, "values": values,
            "n_examples": n_examples, "seconds": 1.0}


def three_seeds(root: Path) -> None:
    """SGD over seeds 0-2, SAM over seeds 0-1, AT with one seed; attacks FGSM and PGD."""
    for seed, (nat, fgsm, pgd) in enumerate([(90, 50, 30), (92, 54, 33), (94, 58, 30)]):
        make_run(root / "sgd" / f"s{seed}", seed=seed, natural=nat,
                 attacks={"FGSM": (FGSM, fgsm), "PGD": (PGD_LINF, pgd)})
    for seed, (nat, fgsm, pgd) in enumerate([(95, 60, 40), (96, 62, 44)]):
        make_run(root / "sam" / f"s{seed}", seed=seed, natural=nat, weight=SAM,
                 attacks={"FGSM": (FGSM, fgsm), "PGD": (PGD_LINF, pgd)})
    make_run(root / "at" / "s0", natural=80, inp=AT,
             attacks={"FGSM": (FGSM, 78), "PGD": (PGD_LINF, 77)})


@contextmanager
def plugin_registered(plugin: object, name: str) -> Iterator[None]:
    """``plugin`` (an object with ``samat.hookimpl`` methods) registered in-process meanwhile."""
    plugins.register_plugin(plugin, name)
    try:
        yield
    finally:
        plugins.unregister_plugin(name)
