"""Entry point of the segmentation plugin (import-light: no torch here)."""

from __future__ import annotations

from samat.hookspecs import Register, hookimpl


@hookimpl
def samat_register_tasks(register: Register) -> None:
    register(
        "segmentation",
        "samat_segmentation.task:SegmentationTask",
        "Semantic segmentation, DeepLabv3 (smp): VOC 2012, Stanford Background or embedded shapes;"
        " mIoU",
    )
