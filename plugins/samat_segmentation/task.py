"""The ``segmentation`` task: DeepLabv3 on VOC 2012, Stanford Background or embedded shapes."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset, Subset

from samat import Bounds, Task, check_choice, check_int
from samat_segmentation.data import STANFORD_CLASSES, VOC_CLASSES, stanford_dataset, voc_dataset
from samat_segmentation.metrics import SegmentationMetric
from samat_segmentation.synthetic import SHAPES_CLASSES, ShapesDataset
from samat_segmentation.transforms import EvalTransform, PadCollate, TrainTransform

DATASETS = {"voc2012": VOC_CLASSES, "stanford_background": STANFORD_CLASSES,
            "shapes": SHAPES_CLASSES}
SHAPES_DEFAULT_SIZES = (1024, 128)  # train, val images when max_train/max_eval are null


class SegmentationTask(Task):
    """Semantic segmentation scored by mIoU (percent, confusion matrix over the whole eval set).

    ``dataset``: ``voc2012`` (``root`` holds ``VOCdevkit/VOC2012``; ``train_list`` may name an
    SBD "aug" list), ``stanford_background`` (``root`` holds the iccv09 ``images/`` and
    ``labels/``; train/val split drawn with ``seed`` unless ``train_list``/``val_list`` are
    given) or ``shapes`` (generated, no ``root``). Training samples are randomly scaled within
    ``scale_range``, cropped to ``crop_size`` (ignore-padded) and flipped; evaluation uses the
    full image (``eval_crop_size=None``) or a centre crop. ``max_train``/``max_eval`` keep the
    first N images (for ``shapes``: the number generated). Loss: pixel-wise cross-entropy
    averaged over pixels whose label is not ``ignore_index``.
    """

    metric = "miou"
    higher_is_better = True
    input_bounds: Bounds = (0.0, 1.0)

    def __init__(
        self,
        dataset: str = "shapes",
        root: str | None = None,
        download: bool = False,
        encoder: str = "mobilenet_v2",
        encoder_weights: str | None = None,
        encoder_depth: int = 5,
        output_stride: int = 8,
        crop_size: int = 64,
        scale_range: Sequence[float] = (0.5, 2.0),
        eval_crop_size: int | None = None,
        train_list: str | None = None,
        val_list: str | None = None,
        val_fraction: float = 0.2,
        max_train: int | None = None,
        max_eval: int | None = None,
        ignore_index: int = 255,
        seed: int = 0,
    ) -> None:
        check_choice("dataset", dataset, DATASETS)
        if dataset != "shapes" and not root:
            raise ValueError(f"root is required for dataset {dataset!r} (the directory holding it)")
        crop_size = check_int("crop_size", crop_size, 8, whole_floats=True)
        eval_crop_size = check_int("eval_crop_size", eval_crop_size, 8, optional=True,
                                   whole_floats=True)
        if len(scale_range) != 2 or not 0 < float(scale_range[0]) <= float(scale_range[1]):
            raise ValueError(f"scale_range must be [low, high] with 0 < low <= high, "
                             f"got {scale_range!r}")
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride!r}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        max_train = check_int("max_train", max_train, optional=True, whole_floats=True)
        max_eval = check_int("max_eval", max_eval, optional=True, whole_floats=True)
        if ignore_index < len(DATASETS[dataset]):
            raise ValueError(f"ignore_index must be >= the number of classes, got {ignore_index}")
        self.dataset, self.download = dataset, bool(download)
        self.root = Path(root).expanduser() if root else None
        self.encoder, self.encoder_weights = encoder, encoder_weights
        self.encoder_depth, self.output_stride = int(encoder_depth), int(output_stride)
        self.crop_size, self.eval_crop_size = crop_size, eval_crop_size
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.train_list = Path(train_list).expanduser() if train_list else None
        self.val_list = Path(val_list).expanduser() if val_list else None
        self.val_fraction, self.seed = float(val_fraction), int(seed)
        self.max_train, self.max_eval = max_train, max_eval
        self.ignore_index = int(ignore_index)
        self.class_names = DATASETS[dataset]
        self.num_classes = len(self.class_names)
        self.collate_fn = PadCollate(self.output_stride, self.ignore_index)
        self._check_data()

    def _check_data(self) -> None:
        """Fail now (before a run directory exists) when the data is not where it should be."""
        if self.dataset != "shapes":
            self._split("val", EvalTransform(None, self.ignore_index))

    def _split(self, split: str, transform: Any) -> Dataset:
        limit = self.max_train if split == "train" else self.max_eval
        if self.dataset == "shapes":
            length = limit or SHAPES_DEFAULT_SIZES[split != "train"]
            return ShapesDataset(split, length, self.crop_size, self.seed, transform)
        assert self.root is not None
        list_file = self.train_list if split == "train" else self.val_list
        if self.dataset == "voc2012":
            data = voc_dataset(self.root, split, list_file, transform, self.download)
        else:
            data = stanford_dataset(self.root, split, list_file, transform, self.seed,
                                    self.val_fraction, self.ignore_index)
        if limit is not None and limit < len(data):
            return Subset(data, range(limit))
        return data

    @cached_property
    def _train(self) -> Dataset:
        return self._split("train", TrainTransform(self.crop_size, self.scale_range,
                                                   self.ignore_index))

    @cached_property
    def _eval(self) -> Dataset:
        return self._split("val", EvalTransform(self.eval_crop_size, self.ignore_index))

    def train_dataset(self) -> Dataset:
        return self._train

    def eval_dataset(self) -> Dataset:
        return self._eval

    def build_model(self) -> nn.Module:
        from samat_segmentation.models import build_deeplabv3

        return build_deeplabv3(self.encoder, self.encoder_weights, self.num_classes,
                               self.encoder_depth, self.output_stride)

    def model_spec(self) -> dict[str, Any]:
        """Encoder and output size of the DeepLabv3 (rebuilt without pretrained weights: the
        exported weights replace them), class names and the ImageNet normalisation."""
        from samat_segmentation.models import IMAGENET_MEAN, IMAGENET_STD

        return {
            "architecture": {"encoder": self.encoder, "num_classes": self.num_classes,
                             "encoder_depth": self.encoder_depth,
                             "output_stride": self.output_stride},
            "classes": list(self.class_names),
            "input_shape": [3, None, None],
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "output": "per-pixel logits (N, classes, H, W)",
        }

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Pixel-wise cross-entropy, mean over pixels not labelled ``ignore_index`` (0 if none)."""
        if not bool((target != self.ignore_index).any()):
            return output.sum() * 0.0  # all ignored: zero loss, zero gradient, no NaN
        return F.cross_entropy(output, target, ignore_index=self.ignore_index)

    def example_losses(self, output: Tensor, target: Tensor) -> Tensor:
        """Per-image cross-entropy, mean over the image's valid pixels (0 if it has none)."""
        losses = F.cross_entropy(output, target, ignore_index=self.ignore_index, reduction="none")
        valid = (target != self.ignore_index).flatten(1).sum(dim=1)
        return losses.flatten(1).sum(dim=1) / valid.clamp(min=1)

    def new_metric(self) -> SegmentationMetric:
        return SegmentationMetric(self.num_classes, self.ignore_index, self.class_names)

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "classes": list(self.class_names),
            "n_train": len(self._train),
            "n_eval": len(self._eval),
            "model": f"DeepLabV3 (segmentation-models-pytorch), encoder {self.encoder}, "
                     f"weights {self.encoder_weights}, output stride {self.output_stride}",
            "eval_input": "full image" if self.eval_crop_size is None
                          else f"centre crop {self.eval_crop_size}",
            "miou_convention": "confusion matrix over the whole eval set, ignore label excluded;"
                               " classes absent from both GT and predictions left out of the mean",
        }
