"""A RobustBench model-info record (``model_info/<dataset>/<threat_model>/<name>.json`` in the
RobustBench repository: same field names, same types) for a standard AutoAttack result.

What RobustBench has no field for (the threat model, which RobustBench encodes in the path; how
many examples were evaluated; the attack as run) is under the one extra key ``"samat"``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

THREAT_MODELS = {"linf": "Linf", "l2": "L2"}
SAMAT_KEY = "samat"


def robustbench_eps(eps: float) -> str:
    """``"8/255"`` when ``eps`` is a multiple of 1/255 (RobustBench's style), else ``"0.5"``."""
    fraction = Fraction(eps).limit_denominator(255)
    if fraction.denominator == 255 and abs(float(fraction) - eps) < 1e-9:
        return f"{fraction.numerator}/255"
    return f"{eps:g}"


def robustbench_record(
    metrics_attack_entry: dict[str, Any],
    *,
    natural_acc: float,
    dataset: str,
    architecture: str,
    name: str,
    n_test: int,
) -> dict[str, Any]:
    """Record for one ``metrics.json`` attack entry (``{"attack": describe(), "accuracy": ...,
    "n_examples": ...}``) of the standard ``autoattack``.

    ``natural_acc``: clean accuracy in percent on the same examples; ``architecture``: the exact
    architecture with its width (:func:`samat_image.models.architecture_label`); ``n_test``:
    the size of the test split the examples were taken from. Fields samat cannot know (link,
    authors, venue, the paper's reported number) are empty strings, to be filled in by hand.

    ``ValueError`` if the entry is not a standard AutoAttack result (RobustBench accepts no other).
    """
    attack = metrics_attack_entry.get("attack", {})
    if attack.get("name") != "autoattack":
        raise ValueError(f"not an autoattack entry: attack name {attack.get('name')!r}")
    if attack.get("version") != "standard":
        raise ValueError(
            f"RobustBench records need version 'standard', got {attack.get('version')!r}"
        )
    n_examples = int(metrics_attack_entry["n_examples"])
    subset = (f"the first {n_examples} of the {n_test} test examples, not the full test set"
              if n_examples < n_test else f"all {n_test} test examples")
    return {
        "link": "",
        "name": name,
        "authors": "",
        "additional_data": False,
        "number_forward_passes": 1,
        "dataset": dataset,
        "venue": "",
        "architecture": architecture,
        "eps": robustbench_eps(float(attack["eps"])),
        "clean_acc": f"{float(natural_acc):.2f}",
        "reported": "",
        "autoattack_acc": f"{float(metrics_attack_entry['accuracy']):.2f}",
        "footnote": f"Evaluated by samat with standard AutoAttack on {subset}.",
        SAMAT_KEY: {
            "threat_model": THREAT_MODELS[attack["norm"]],
            "n_examples": n_examples,
            "n_test": n_test,
            "full_test_set": n_examples >= n_test,
            "attack": {key: attack[key] for key in (
                "name", "version", "norm", "eps", "n_classes", "seed", "library",
                "library_version") if key in attack},
        },
    }
