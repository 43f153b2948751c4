"""The embedded dataset: geometric shapes composited on real textures that scikit-image ships.

Every image is a crop of one texture (brick, grass, gravel, ...) with one to three shapes
(ellipse, rectangle, triangle) cut out of other textures, each tinted at random; the class of a
pixel is its topmost shape (0 = background). Texture and tint carry no class information: only
the geometry does. Images are generated on the fly, deterministically from ``(seed, split,
index)``, so nothing is downloaded and every run sees the same data.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from samat_segmentation.data import Transform

SHAPES_CLASSES = ("background", "ellipse", "rectangle", "triangle")
TEXTURES = ("brick", "grass", "gravel", "camera", "moon", "coffee", "astronaut", "rocket",
            "chelsea", "immunohistochemistry")
SPLITS = {"train": 0, "val": 1}


@cache
def textures() -> tuple[np.ndarray, ...]:
    """The scikit-image textures as ``(H, W, 3)`` float32 arrays in ``[0, 1]``."""
    import skimage.data

    out = []
    for name in TEXTURES:
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
        out.append(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3])
    return tuple(out)


def _patch(rng: np.random.Generator, texture: np.ndarray, size: int) -> np.ndarray:
    """A random ``size`` x ``size`` crop of ``texture`` at a random zoom, randomly tinted."""
    zoom = rng.uniform(1.0, 3.0)
    span = min(int(size * zoom), *texture.shape[:2])
    top = rng.integers(texture.shape[0] - span + 1)
    left = rng.integers(texture.shape[1] - span + 1)
    rows = top + (np.arange(size) * span // size)
    cols = left + (np.arange(size) * span // size)
    tint = rng.uniform(0.4, 1.0, size=3).astype(np.float32)
    return texture[np.ix_(rows, cols)] * tint


def _shape_mask(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    """Boolean mask of one shape of class ``kind`` (1 ellipse, 2 rectangle, 3 triangle)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cy, cx = rng.uniform(0.2, 0.8, size=2) * size
    ry, rx = rng.uniform(0.12, 0.3, size=2) * size
    if kind == 1:
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    if kind == 2:
        return (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    angle = rng.uniform(0, 2 * np.pi)  # a triangle inscribed in the (ry, rx) ellipse
    corners = [(cy + ry * np.sin(angle + k * 2 * np.pi / 3),
                cx + rx * np.cos(angle + k * 2 * np.pi / 3)) for k in range(3)]
    sides = []
    for (y0, x0), (y1, x1) in zip(corners, corners[1:] + corners[:1], strict=True):
        sides.append((x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0))
    return np.all([s >= 0 for s in sides], axis=0) | np.all([s <= 0 for s in sides], axis=0)


def make_shapes_image(seed: int, split: str, index: int, size: int) -> tuple[Tensor, Tensor]:
    """One ``(image, mask)`` pair, a pure function of its arguments."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    pool = textures()
    order = rng.permutation(len(pool))
    image = _patch(rng, pool[order[0]], size)
    mask = np.zeros((size, size), dtype=np.int64)
    for k in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(1, len(SHAPES_CLASSES)))
        region = _shape_mask(rng, kind, size)
        image[region] = _patch(rng, pool[order[1 + k]], size)[region]
        mask[region] = kind
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).clamp_(0.0, 1.0)
    return x, torch.from_numpy(mask)


class ShapesDataset(Dataset):
    """``length`` generated ``size`` x ``size`` images of ``split`` (``train`` or ``val``)."""

    def __init__(self, split: str, length: int, size: int, seed: int, transform: Transform) -> None:
        self.split, self.length, self.size, self.seed = split, length, size, seed
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.transform(*make_shapes_image(self.seed, self.split, index, self.size))
