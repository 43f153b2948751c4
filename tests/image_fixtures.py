"""Tiny image datasets in their real on-disk formats, for the image plugin's tests.

Pixel values encode the label (each class has its own mean grey level plus noise), so a model can
learn them and a reader that mixes up labels or channels is caught.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _images(rng: np.random.Generator, labels: np.ndarray, n_classes: int, side: int) -> np.ndarray:
    """``(N, side, side, 3)`` uint8 images whose brightness grows with the label."""
    base = (40 + 170 * labels / max(n_classes - 1, 1))[:, None, None, None]
    noise = rng.integers(-30, 31, size=(len(labels), side, side, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


CIFAR_STYLES = ("array", "list", "bytes", "python2")
"""How :func:`make_cifar10`/:func:`make_cifar100` pickle: ``array`` (str keys, numpy ``data``,
protocol 2), ``list`` (``data`` as lists of ints, default protocol), ``bytes`` (bytes keys and
filenames, as re-pickled after ``pickle.load(encoding="bytes")``, protocol 5) and ``python2``
(byte for byte what Python 2 wrote for the official files: ``numpy.core.multiarray`` and
Python 2 ``str`` pixel data)."""


class MarkerPayload:
    """Unpickling this runs ``exec`` of code that writes ``marker``: a malicious data file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def _py2(obj: Any) -> bytes:
    """Python 2's protocol-2 pickle of ``obj`` (dict, list, tuple, int, str, uint8 array)."""
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(v) for v in obj) + b"e"
    if isinstance(obj, tuple):
        return b"(" + b"".join(_py2(v) for v in obj) + b"t"
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, str):  # a Python 2 str is bytes
        return b"T" + struct.pack("<I", len(obj)) + obj.encode("latin1")
    assert isinstance(obj, np.ndarray) and obj.dtype == np.uint8
    dtype = (b"cnumpy\ndtype\n" + _py2(("u1", 0, 1)) + b"R"
             + _py2((3, "|", None, None, None, -1, -1, 0)) + b"b")
    raw = obj.tobytes().decode("latin1")
    return (b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n" + _py2((0,)) + _py2("b")
            + b"tR(" + _py2(1) + _py2(obj.shape) + dtype + _py2(False) + _py2(raw) + b"tb")


def _dump(path: Path, obj: dict, style: str = "array") -> None:
    if style == "python2":
        path.write_bytes(b"\x80\x02" + _py2(obj) + b".")
        return
    if style == "list":
        obj = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in obj.items()}
    elif style == "bytes":
        obj = {k.encode(): [v.encode() if isinstance(v, str) else v for v in value]
               if isinstance(value, list) else value.encode() if isinstance(value, str) else value
               for k, value in obj.items()}
    protocol = {"array": 2, "list": pickle.DEFAULT_PROTOCOL, "bytes": 5}[style]
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """CIFAR rows: 1024 red, then 1024 green, then 1024 blue values, row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32)


def make_cifar10(root: Path, per_batch: int = 4, n_test: int = 8, seed: int = 0,
                 style: str = "array") -> Path:
    """``root/cifar-10-batches-py`` (data_batch_1..5, test_batch, batches.meta) pickled in
    ``style`` (:data:`CIFAR_STYLES`); returns root."""
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
        }, style)
    _dump(directory / "batches.meta", {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                        "ship", "truck"],
        "num_cases_per_batch": per_batch, "num_vis": 3072,
    }, style)
    return root


def make_cifar100(root: Path, n_train: int = 12, n_test: int = 6, seed: int = 0,
                  style: str = "array") -> Path:
    """``root/cifar-100-python`` (train, test, meta with fine and coarse labels) pickled in
    ``style`` (:data:`CIFAR_STYLES`); returns root."""
    rng = np.random.default_rng(seed)
    directory = root / "cifar-100-python"
    directory.mkdir(parents=True)
    for name, size in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, size)
        _dump(directory / name, {
            "filenames": [f"{name}_{i}.png" for i in range(size)], "batch_label": name,
            "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
            "data": _cifar_rows(_images(rng, fine, 100, 32)),
        }, style)
    _dump(directory / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                               "coarse_label_names": [f"coarse{i}" for i in range(20)]}, style)
    return root


TINY_WNIDS = ("n01443537", "n01629819", "n01641577")


def make_tinyimagenet(root: Path, per_class: int = 3, n_val: int = 6, seed: int = 0,
                      n_classes: int = len(TINY_WNIDS)) -> Path:
    """``root/tiny-imagenet-200``: wnids.txt, words.txt, train/<wnid>/images/*.JPEG with
    <wnid>_boxes.txt, val/images/*.JPEG with val/val_annotations.txt; 64x64 JPEGs (one of them
    greyscale, as in the real set); :data:`TINY_WNIDS` then made-up wnids up to ``n_classes``
    (200: the real set's classes, for recipes whose attacks name them). Returns root."""
    rng = np.random.default_rng(seed)
    directory = root / "tiny-imagenet-200"
    wnids = [*TINY_WNIDS, *(f"n9{i:07d}" for i in range(n_classes - len(TINY_WNIDS)))]
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
