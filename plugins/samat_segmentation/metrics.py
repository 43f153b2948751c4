"""mIoU from a confusion matrix accumulated over the whole evaluation set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from samat import Metric


class SegmentationMetric(Metric):
    """Confusion matrix over every scored pixel of every batch (``ignore_index`` excluded).

    ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``. ``miou`` (percent) is the mean over the classes
    present in the ground truth or the predictions of the evaluated set; a class absent from
    both has an undefined IoU (0/0) and is left out of the mean (it is ``None`` in
    ``iou_per_class``). ``pixel_accuracy`` (percent) is correct / scored pixels.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 class_names: Sequence[str] | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names or (str(c) for c in range(num_classes)))
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)  # [gt, pred]
        self.n_examples = 0

    def update(self, output: Tensor, target: Tensor) -> None:
        """``output``: ``(N, C, H, W)`` logits; ``target``: ``(N, H, W)`` class ids."""
        pred = output.detach().argmax(dim=1).flatten()
        gt = target.detach().flatten()
        valid = gt != self.ignore_index
        k = self.num_classes
        index = (gt[valid] * k + pred[valid]).cpu()
        self.n_examples += int(target.shape[0])
        self.confusion += torch.bincount(index, minlength=k * k).reshape(k, k)

    def state(self) -> list[Tensor]:
        return [self.confusion.clone(), torch.tensor([self.n_examples], dtype=torch.int64)]

    def load_state(self, state: list[Tensor]) -> None:
        self.confusion = state[0].to(torch.int64).cpu()
        self.n_examples = int(state[1][0])

    def iou(self) -> list[float | None]:
        """Per-class IoU in ``[0, 1]``; ``None`` for classes absent from GT and predictions."""
        tp = self.confusion.diag()
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        pairs = zip(tp.tolist(), union.tolist(), strict=True)
        return [None if u == 0 else t / u for t, u in pairs]

    def compute(self) -> dict[str, Any]:
        ious = self.iou()
        present = [v for v in ious if v is not None]
        total = int(self.confusion.sum())
        return {
            "miou": 100.0 * sum(present) / len(present) if present else 0.0,
            "pixel_accuracy": 100.0 * int(self.confusion.diag().sum()) / max(total, 1),
            "iou_per_class": {name: None if v is None else 100.0 * v
                              for name, v in zip(self.class_names, ious, strict=True)},
            "n_pixels": total,
            "n_examples": self.n_examples,
        }
