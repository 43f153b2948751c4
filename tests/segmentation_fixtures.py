"""Tiny datasets in the real on-disk layouts of PASCAL VOC 2012 and Stanford Background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map, flattened RGB (index 255 is (224, 224, 192))."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _scene(rng: np.random.Generator, height: int, width: int, classes: list[int],
           ignore: int | None) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with one coloured rectangle per class on a noisy background, and its labels
    (0 background; ``ignore`` on a 1-pixel rectangle border, as VOC's boundary pixels)."""
    image = rng.integers(0, 60, size=(height, width, 3)).astype(np.uint8)
    labels = np.zeros((height, width), dtype=np.int64)
    for cls in classes:
        h, w = rng.integers(height // 4, height // 2), rng.integers(width // 4, width // 2)
        top, left = rng.integers(0, height - h), rng.integers(0, width - w)
        image[top:top + h, left:left + w] = (37 * cls) % 256, (91 * cls) % 256, 200
        labels[top:top + h, left:left + w] = cls
        if ignore is not None:
            labels[top, left:left + w] = labels[top + h - 1, left:left + w] = ignore
    return image, labels


def build_voc(root: Path, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (40, 52),
              seed: int = 0) -> Path:
    """``root/VOCdevkit/VOC2012`` with JPEGImages/*.jpg, SegmentationClass/*.png (palette PNGs
    whose indices are class ids, 255 = boundary) and ImageSets/Segmentation/{train,val}.txt.
    Image sizes differ by a few pixels (as VOC's do). Returns ``root``."""
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "val": []}
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        name = f"2007_{i:06d}"
        height, width = size[0] + 4 * (i % 2), size[1] - 4 * (i % 3)
        image, labels = _scene(rng, height, width, [1 + i % 20, 15], ignore=255)
        Image.fromarray(image).save(base / "JPEGImages" / f"{name}.jpg", quality=95)
        mask = Image.fromarray(labels.astype(np.uint8), mode="P")
        mask.putpalette(voc_palette())
        mask.save(base / "SegmentationClass" / f"{name}.png")
        splits[split].append(name)
    for split, names in splits.items():
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def build_stanford(root: Path, n: int = 6, size: tuple[int, int] = (36, 44), seed: int = 0) -> Path:
    """An iccv09-style tree: ``images/<id>.jpg`` and ``labels/<id>.regions.txt`` (integer
    matrices, classes 0..7, -1 = unknown). Returns ``root``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"{1000 + i:07d}"
        image, labels = _scene(rng, size[0], size[1], [1 + i % 7], ignore=None)
        labels[:2] = -1  # an unlabelled strip
        Image.fromarray(image).save(root / "images" / f"{name}.jpg", quality=95)
        np.savetxt(root / "labels" / f"{name}.regions.txt", labels, fmt="%d")
    return root
