"""Entry point of the image-classification plugin (import-light: no torch here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samat import Register, hookimpl


@hookimpl
def samat_register_tasks(register: Register) -> None:
    register(
        "image_classification",
        "samat_image.task:ImageClassificationTask",
        "CIFAR-10/100, TinyImageNet, image folders or digits; PRN-18, WRN, DeiT-tiny, small CNN",
        example={"dataset": "digits", "model": "small_cnn", "n_train": 64},  # offline, no weights
        environment=("root", "download"),
        model_builder="samat_image.models:exported_model",
    )


@hookimpl
def samat_register_attacks(register: Register) -> None:
    from samat_image.attacks import ATTACKS  # a constant: (name, "module:attr", description,
    # example)

    for name, factory, description, example in ATTACKS:
        register(name, factory, description, example=example)


@hookimpl
def samat_reference_results() -> list[dict[str, Any]]:
    """The paper's CIFAR-10/100, TinyImageNet and WRN/DeiT tables for ``--against paper``
    (``reference_results.yaml``)."""
    from importlib import resources

    import yaml

    path = resources.files("samat_image").joinpath("reference_results.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))["tables"]


@hookimpl
def samat_on_result(metrics: dict[str, Any], run_dir: str) -> None:
    """Write ``robustbench.json`` beside ``metrics.json`` for every standard AutoAttack result."""
    if metrics["task"]["name"] != "image_classification":
        return
    from samat import write_json
    from samat_image.attacks.robustbench import robustbench_record
    from samat_image.models import architecture_label

    task = metrics["task"]
    records = [
        robustbench_record(
            entry, natural_acc=metrics["natural"]["accuracy"], dataset=task["dataset"],
            architecture=architecture_label(task["architecture"], task["model_options"]),
            name=f"{metrics['recipe']['name']} ({entry['label']})", n_test=task["n_test"],
        )
        for entry in metrics["attacks"]
        if entry["attack"].get("name") == "autoattack"
        and entry["attack"].get("version") == "standard"
    ]
    if records:
        write_json(Path(run_dir) / "robustbench.json", records)
