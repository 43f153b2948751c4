"""Entry point of the segmentation plugin (import-light: no torch here)."""

from __future__ import annotations

from typing import Any

from samat import Register, RegisterMetric, hookimpl


@hookimpl
def samat_register_tasks(register: Register) -> None:
    register(
        "segmentation",
        "samat_segmentation.task:SegmentationTask",
        "Semantic segmentation, DeepLabv3 (smp): VOC 2012, Stanford Background or embedded shapes;"
        " mIoU",
        example={"dataset": "shapes", "crop_size": 32, "max_train": 8, "max_eval": 8},
        environment=("root", "download"),
        model_builder="samat_segmentation.models:exported_model",
    )


@hookimpl
def samat_register_metrics(register: RegisterMetric) -> None:
    register("miou", "mIoU")


@hookimpl
def samat_reference_results() -> list[dict[str, Any]]:
    """The paper's Stanford Background and VOC 2012 tables for ``--against paper``
    (``reference_results.yaml``)."""
    from importlib import resources

    import yaml

    path = resources.files("samat_segmentation").joinpath("reference_results.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))["tables"]
