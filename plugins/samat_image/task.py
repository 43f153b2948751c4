"""``image_classification``: one task for CIFAR-10/100, TinyImageNet, image folders and digits."""

from __future__ import annotations

from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from samat import Bounds, SamatError, Task, check_int, unknown_name_message
from samat_image import data
from samat_image.library_models import is_library_model
from samat_image.models import build_model, check_model


class ImageClassificationTask(Task):
    """Image classification with inputs in [0, 1] and normalisation inside the model.

    ``dataset``: cifar10 | cifar100 | tinyimagenet | imagefolder | digits, read from ``root``
    (``download`` fetches CIFAR/TinyImageNet). ``model``: preactresnet18 | wrn | deit_tiny |
    small_cnn with ``width``/``depth``/``dropout`` where the model has them (``None``: its
    default). ``augment``: random crop (pad 4) + horizontal flip on training data (``None``: on,
    except digits). ``resize``: side images are resized to (TinyImageNet/imagefolder).
    ``n_train``: a seeded random subset of the training set, for quick runs.
    """

    metric = "accuracy"
    input_bounds: Bounds = (0.0, 1.0)

    def __init__(
        self,
        dataset: str = "cifar10",
        root: str = "data",
        download: bool = False,
        model: str = "preactresnet18",
        width: int | None = None,
        depth: int | None = None,
        dropout: float | None = None,
        augment: bool | None = None,
        resize: int | None = None,
        n_train: int | None = None,
        seed: int = 0,
        pretrained: bool = False,
    ) -> None:
        if dataset not in data.DATASETS:
            raise ValueError(unknown_name_message("dataset", dataset, list(data.DATASETS)))
        resize = check_int("resize", resize, optional=True)
        n_train = check_int("n_train", n_train, optional=True)
        if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32-1], got {seed!r}")
        if augment is not None and not isinstance(augment, bool):
            raise ValueError(f"augment must be true, false or null, got {augment!r}")
        if resize is not None and dataset in ("cifar10", "cifar100", "digits"):
            raise ValueError(f"resize applies to tinyimagenet and imagefolder, not {dataset}")
        if download and dataset in ("imagefolder", "digits"):
            raise ValueError(f"download: {dataset} cannot be downloaded (digits ship with "
                             "scikit-learn; an image folder is yours)")
        if not isinstance(pretrained, bool):
            raise ValueError(f"pretrained must be true or false, got {pretrained!r}")
        if pretrained and not is_library_model(model):
            raise ValueError(f"pretrained: true needs a timm:NAME or torchvision:NAME model, "
                             f"got model {model!r}")
        self.pretrained = pretrained
        self.options = {k: v for k, v in (("width", width), ("depth", depth),
                                          ("dropout", dropout)) if v is not None}
        check_model(model, self.options)
        self.dataset, self.download, self.model_name = dataset, download, model
        self.root = Path(root).expanduser()
        self.augment = dataset != "digits" if augment is None else bool(augment)
        self.resize, self.n_train, self.seed = resize, n_train, int(seed)
        self._splits: data.Splits | None = None
        self._train: Dataset | None = None
        self.splits()  # fail now (at `samat validate`) if the data are missing

    def splits(self) -> data.Splits:
        """The loaded train/test splits (read once)."""
        if self._splits is None:
            if self.dataset in ("cifar10", "cifar100"):
                self._splits = data.load_cifar(self.dataset, self.root, self.download,
                                               self.augment)
            elif self.dataset == "tinyimagenet":
                self._splits = data.load_tinyimagenet(self.root, self.download, self.resize,
                                                      self.augment)
            elif self.dataset == "imagefolder":
                self._splits = data.load_imagefolder(self.root, self.resize, self.augment)
            else:
                self._splits = data.load_digits(self.seed, self.augment)
        return self._splits

    def train_dataset(self) -> Dataset:
        if self._train is None:
            train = self.splits().train
            if self.n_train is not None and self.n_train < len(train):
                generator = torch.Generator().manual_seed(self.seed)
                order = torch.randperm(len(train), generator=generator)[: self.n_train]
                train = Subset(train, sorted(order.tolist()))
            self._train = train
        return self._train

    def eval_dataset(self) -> Dataset:
        return self.splits().test

    def build_model(self) -> nn.Module:
        s = self.splits()
        try:
            return build_model(self.model_name, s.num_classes, s.in_channels, s.img_size,
                               s.mean, s.std, self.pretrained, **self.options)
        except (ValueError, TypeError) as error:
            raise SamatError(f"task: {error}") from None

    def model_spec(self) -> dict[str, Any]:
        """The builder's arguments (:func:`samat_image.models.exported_model`), class names,
        input shape and the normalisation inside the model."""
        s = self.splits()
        normalization = {"mean": list(s.mean), "std": list(s.std)}
        return {
            "architecture": {"model": self.model_name, "num_classes": s.num_classes,
                             "in_channels": s.in_channels, "img_size": s.img_size,
                             **normalization, **self.options},
            "classes": list(s.classes) if s.classes is not None else None,
            "input_shape": [s.in_channels, s.img_size, s.img_size],
            "normalization": normalization,
            "output": "logits over the classes",
        }

    def report(self, model: nn.Module) -> dict[str, Any]:
        return {
            "architecture": self.model_name,
            "model_options": dict(self.options),
            "n_parameters": sum(p.numel() for p in model.parameters()),
        }

    def describe(self) -> dict[str, Any]:
        s = self.splits()
        return {
            "dataset": self.dataset,
            "source": s.source,
            "n_train": len(self.train_dataset()),
            "n_test": len(s.test),
            "num_classes": s.num_classes,
            "input_shape": [s.in_channels, s.img_size, s.img_size],
            "mean": list(s.mean),
            "std": list(s.std),
            "augment": self.augment,
            "architecture": self.model_name,
            "model_options": dict(self.options),
            **({"pretrained": True} if self.pretrained else {}),
            "seed": self.seed,
        }
