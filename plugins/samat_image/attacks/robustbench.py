"""A RobustBench-shaped record (the fields of its model-info JSON) for an AutoAttack result."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

THREAT_MODELS = {"linf": "Linf", "l2": "L2"}


def robustbench_eps(eps: float) -> str:
    """``"8/255"`` when ``eps`` is a multiple of 1/255 (RobustBench's style), else ``"0.5"``."""
    fraction = Fraction(eps).limit_denominator(255)
    if fraction.denominator == 255 and abs(float(fraction) - eps) < 1e-9:
        return f"{fraction.numerator}/255"
    return f"{eps:g}"


def robustbench_record(
    metrics_attack_entry: dict[str, Any],
    natural_acc: float,
    dataset: str,
    architecture: str,
    name: str,
) -> dict[str, str]:
    """Record for one ``metrics.json`` attack entry (``{"attack": describe(), "accuracy": ...}``)
    of the standard ``autoattack``; ``natural_acc`` is the clean accuracy in percent.

    ``ValueError`` if the entry is not a standard AutoAttack result (RobustBench accepts no other).
    """
    attack = metrics_attack_entry.get("attack", {})
    if attack.get("name") != "autoattack":
        raise ValueError(f"not an autoattack entry: attack name {attack.get('name')!r}")
    if attack.get("version") != "standard":
        raise ValueError(
            f"RobustBench records need version 'standard', got {attack.get('version')!r}"
        )
    return {
        "dataset": dataset,
        "threat_model": THREAT_MODELS[attack["norm"]],
        "eps": robustbench_eps(float(attack["eps"])),
        "clean_acc": f"{float(natural_acc):.2f}",
        "autoattack_acc": f"{float(metrics_attack_entry['accuracy']):.2f}",
        "architecture": architecture,
        "name": name,
    }
