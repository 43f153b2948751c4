"""Readers for the real dataset layouts: PASCAL VOC 2012 and Stanford Background (iccv09).

Each dataset yields ``(image, mask)``: a ``(3, H, W)`` float tensor in ``[0, 1]`` and an
``(H, W)`` int64 tensor of class ids with ``ignore_index`` where there is no label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from samat import MissingDataError

Transform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
STANFORD_CLASSES = (
    "sky", "tree", "road", "grass", "water", "building", "mountain", "foreground object",
)
VOC_TAR_URL = "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
STANFORD_URL_HINT = (
    "download iccv09Data.tar.gz from http://dags.stanford.edu/projects/scenedataset.html "
    "and extract it there (task.root may be iccv09Data/ or the folder holding it)"
)


def voc_fix(root: Path, download: bool) -> str:
    """How to obtain VOC 2012 under ``root``; never "set task.download=true" when it is set."""
    fetch = (f"fetch {VOC_TAR_URL} by hand and extract it in {root.resolve()}/ (it unpacks to "
             "VOCdevkit/VOC2012/)")
    return fetch if download else f"{fetch}, or set task.download=true"


def load_image(path: Path) -> Tensor:
    """An RGB image file as a ``(3, H, W)`` float tensor in ``[0, 1]``."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def read_list(path: Path, what: str) -> list[str]:
    """Image ids, one per line (first whitespace-separated field; ``/a/b/id.jpg`` forms of the
    SBD "aug" lists are reduced to ``id``)."""
    if not path.is_file():
        raise MissingDataError(f"{what}: list file {path.resolve()} not found")
    ids = [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise MissingDataError(f"{what}: list file {path.resolve()} is empty")
    return ids


class PairDataset(Dataset):
    """``(image, mask)`` pairs from parallel file lists, read lazily, then ``transform``-ed."""

    def __init__(self, images: Sequence[Path], masks: Sequence[Path],
                 read_mask: Callable[[Path], Tensor], transform: Transform) -> None:
        self.images, self.masks = list(images), list(masks)
        self.read_mask, self.transform = read_mask, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = load_image(self.images[index]), self.read_mask(self.masks[index])
        if image.shape[-2:] != mask.shape:
            raise MissingDataError(
                f"{self.images[index]} is {tuple(image.shape[-2:])} but its label "
                f"{self.masks[index]} is {tuple(mask.shape)}"
            )
        return self.transform(image, mask)


# -- PASCAL VOC 2012 ---------------------------------------------------------------------------
def read_voc_mask(path: Path) -> Tensor:
    """A VOC ``SegmentationClass`` palette PNG: its palette indices are the class ids (255 =
    boundary/ignore)."""
    with Image.open(path) as img:
        if img.mode != "P":
            raise MissingDataError(f"{path}: expected a palette ('P' mode) PNG, got {img.mode}")
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).astype(np.int64))


def voc_dir(root: Path) -> Path:
    """The ``VOC2012`` folder as users unpack it: ``root`` itself, ``root/VOC2012``
    (``root`` is ``VOCdevkit/``) or ``root/VOCdevkit/VOC2012``, where the tar puts it."""
    for base in (root, root / "VOC2012"):
        if (base / "JPEGImages").is_dir():
            return base
    return root / "VOCdevkit" / "VOC2012"


def voc_download(root: Path) -> None:
    """Fetch VOC 2012 trainval into ``root`` with torchvision (needs internet)."""
    from torchvision.datasets import VOCSegmentation

    root.mkdir(parents=True, exist_ok=True)
    try:
        VOCSegmentation(str(root), year="2012", image_set="train", download=True)
    except (OSError, RuntimeError) as exc:  # URLError, socket errors; a corrupt archive
        raise MissingDataError(
            f"task.download: could not download VOC 2012 into {root.resolve()} ({exc}); "
            f"{voc_fix(root, download=True)}"
        ) from None


def voc_dataset(root: Path, split: str, list_file: Path | None, transform: Transform,
                download: bool = False) -> PairDataset:
    """VOC 2012 ``split`` (``train``/``val``) from ``ImageSets/Segmentation/<split>.txt`` or
    ``list_file`` (e.g. the SBD "train_aug" list; its masks must then be in
    ``SegmentationClassAug/`` if not in ``SegmentationClass/``)."""
    base = voc_dir(root)
    if not (base / "JPEGImages").is_dir() and download:
        voc_download(root)
        base = voc_dir(root)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        if not (base / sub).is_dir():
            raise MissingDataError(
                f"task.root: VOC 2012 not found: expected {(base / sub).resolve()}/ "
                f"(task.root may be VOC2012/, VOCdevkit/ or the folder holding VOCdevkit/; now "
                f"{root.resolve()}); {voc_fix(root, download)}"
            )
    ids = read_list(list_file or base / "ImageSets" / "Segmentation" / f"{split}.txt",
                    f"VOC {split} list")
    masks = []
    for i in ids:
        mask = base / "SegmentationClass" / f"{i}.png"
        if not mask.is_file() and (base / "SegmentationClassAug" / f"{i}.png").is_file():
            mask = base / "SegmentationClassAug" / f"{i}.png"
        masks.append(mask)
    images = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
    _check_exist(images + masks, f"VOC {split}")
    return PairDataset(images, masks, _voc_mask_reader, transform)


def _voc_mask_reader(path: Path) -> Tensor:
    """SBD "aug" masks are grayscale class-id PNGs; VOC's own are palette PNGs."""
    if path.parent.name == "SegmentationClassAug":
        with Image.open(path) as img:
            return torch.from_numpy(np.asarray(img, dtype=np.uint8).astype(np.int64))
    return read_voc_mask(path)


# -- Stanford Background -----------------------------------------------------------------------
def read_regions(path: Path, ignore_index: int = 255) -> Tensor:
    """An iccv09 ``labels/<id>.regions.txt`` integer matrix; negative labels (unknown) ->
    ``ignore_index``."""
    labels = np.loadtxt(path, dtype=np.int64, ndmin=2)
    labels[labels < 0] = ignore_index
    return torch.from_numpy(labels)


def stanford_dir(root: Path) -> Path:
    """The folder with ``images/`` and ``labels/``: ``root`` itself or ``root/iccv09Data``
    (``root`` holds the unpacked archive)."""
    unpacked = root / "iccv09Data"
    return unpacked if not (root / "images").is_dir() and unpacked.is_dir() else root


def stanford_dataset(root: Path, split: str, list_file: Path | None, transform: Transform,
                     seed: int, val_fraction: float, ignore_index: int) -> PairDataset:
    """Stanford Background ``split``: the ids in ``list_file`` if given, else a deterministic
    split of the sorted ids (a ``val_fraction`` share drawn with ``seed`` is ``val``)."""
    base = stanford_dir(root)
    images_dir, labels_dir = base / "images", base / "labels"
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise MissingDataError(
                f"task.root: Stanford Background not found: expected {d.resolve()}/ (iccv09 "
                f"layout with images/*.jpg and labels/*.regions.txt); {STANFORD_URL_HINT}"
            )
    if list_file is not None:
        ids = read_list(list_file, f"Stanford Background {split} list")
    else:
        all_ids = sorted(p.stem for p in images_dir.glob("*.jpg"))
        if len(all_ids) < 2:
            raise MissingDataError(f"task.root: fewer than 2 images in {images_dir.resolve()}")
        order = np.random.default_rng(seed).permutation(len(all_ids))
        n_val = min(max(1, round(val_fraction * len(all_ids))), len(all_ids) - 1)
        chosen = order[:n_val] if split == "val" else order[n_val:]
        ids = [all_ids[i] for i in sorted(chosen)]
    images = [images_dir / f"{i}.jpg" for i in ids]
    masks = [labels_dir / f"{i}.regions.txt" for i in ids]
    _check_exist(images + masks, f"Stanford Background {split}")
    return PairDataset(images, masks, partial(read_regions, ignore_index=ignore_index), transform)


def _check_exist(paths: Sequence[Path], what: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MissingDataError(
            f"{what}: {len(missing)} listed file(s) missing, first {missing[0].resolve()}"
        )
