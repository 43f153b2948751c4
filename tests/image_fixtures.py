"""Tiny image datasets in their real on-disk formats, for the image plugin's tests.

Pixel values encode the label (each class has its own mean grey level plus noise), so a model can
learn them and a reader that mixes up labels or channels is caught.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _images(rng: np.random.Generator, labels: np.ndarray, n_classes: int, side: int) -> np.ndarray:
    """``(N, side, side, 3)`` uint8 images whose brightness grows with the label."""
    base = (40 + 170 * labels / max(n_classes - 1, 1))[:, None, None, None]
    noise = rng.integers(-30, 31, size=(len(labels), side, side, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """CIFAR rows: 1024 red, then 1024 green, then 1024 blue values, row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32)


def make_cifar10(root: Path, per_batch: int = 4, n_test: int = 8, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` (data_batch_1..5, test_batch, batches.meta); returns root."""
    rng = np.random.default_rng(seed)
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    batches = [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    for name, size in batches:
        labels = rng.integers(0, 10, size)
        _dump(directory / name, {
            "batch_label": name, "labels": labels.tolist(),
            "data": _cifar_rows(_images(rng, labels, 10, 32)),
            "filenames": [f"{name}_{i}.png" for i in range(size)],
        })
    _dump(directory / "batches.meta", {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                        "ship", "truck"],
        "num_cases_per_batch": per_batch, "num_vis": 3072,
    })
    return root


def make_cifar100(root: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> Path:
    """``root/cifar-100-python`` (train, test, meta with fine and coarse labels); returns root."""
    rng = np.random.default_rng(seed)
    directory = root / "cifar-100-python"
    directory.mkdir(parents=True)
    for name, size in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, size)
        _dump(directory / name, {
            "filenames": [f"{name}_{i}.png" for i in range(size)], "batch_label": name,
            "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
            "data": _cifar_rows(_images(rng, fine, 100, 32)),
        })
    _dump(directory / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                               "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return root


TINY_WNIDS = ("n01443537", "n01629819", "n01641577")


def make_tinyimagenet(root: Path, per_class: int = 3, n_val: int = 6, seed: int = 0) -> Path:
    """``root/tiny-imagenet-200``: wnids.txt, words.txt, train/<wnid>/images/*.JPEG with
    <wnid>_boxes.txt, val/images/*.JPEG with val/val_annotations.txt; 64x64 JPEGs (one of them
    greyscale, as in the real set). Returns root."""
    rng = np.random.default_rng(seed)
    directory = root / "tiny-imagenet-200"
    wnids = list(TINY_WNIDS)
    directory.mkdir(parents=True)
    (directory / "wnids.txt").write_text("".join(f"{w}\n" for w in reversed(wnids)))
    (directory / "words.txt").write_text("".join(f"{w}\tthing {i}\n" for i, w in enumerate(wnids)))
    for label, wnid in enumerate(wnids):
        images = directory / "train" / wnid / "images"
        images.mkdir(parents=True)
        pixels = _images(rng, np.full(per_class, label), len(wnids), 64)
        for i, array in enumerate(pixels):
            image = Image.fromarray(array)
            (image.convert("L") if (label, i) == (0, 0) else image).save(
                images / f"{wnid}_{i}.JPEG", quality=95)
        (directory / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(per_class)))
    val_images = directory / "val" / "images"
    val_images.mkdir(parents=True)
    labels = np.arange(n_val) % len(wnids)
    lines = []
    for i, (array, label) in enumerate(zip(_images(rng, labels, len(wnids), 64), labels,
                                           strict=True)):
        Image.fromarray(array).save(val_images / f"val_{i}.JPEG", quality=95)
        lines.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t63\t63\n")
    (directory / "val" / "val_annotations.txt").write_text("".join(lines))
    return root


def make_imagefolder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3,
                     side: int = 24, seed: int = 0) -> Path:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png``; returns root."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            pixels = _images(rng, np.full(per_class, label), len(classes), side)
            for i, array in enumerate(pixels):
                Image.fromarray(array).save(folder / f"{i}.png")
    return root
