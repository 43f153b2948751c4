"""Paired image/mask transforms on tensors and the padding collate function.

Images are ``(3, H, W)`` float tensors in ``[0, 1]``; masks ``(H, W)`` int64 class ids with
``ignore_index`` where there is no label. Randomness comes from torch's global generator, whose
state the core trainer checkpoints, so resumed runs replay the same augmentations.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def pad_to(image: Tensor, mask: Tensor, height: int, width: int,
           ignore_index: int) -> tuple[Tensor, Tensor]:
    """Pad bottom/right to at least ``height`` x ``width``: image 0, mask ``ignore_index``."""
    dh, dw = max(height - image.shape[-2], 0), max(width - image.shape[-1], 0)
    if dh == 0 and dw == 0:
        return image, mask
    image = F.pad(image, (0, dw, 0, dh), value=0.0)
    mask = F.pad(mask, (0, dw, 0, dh), value=ignore_index)
    return image, mask


def rescale(image: Tensor, mask: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Resize by ``scale``: bilinear for the image, nearest for the mask. Both use pixel-centre
    alignment (``nearest-exact``; plain ``nearest`` samples ``floor(i * in / out)`` and shifts
    the mask by up to half an input pixel against the bilinear image when upscaling)."""
    h, w = image.shape[-2:]
    size = (max(round(h * scale), 1), max(round(w * scale), 1))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    return image.clamp(0.0, 1.0), mask


class TrainTransform:
    """Random scale in ``scale_range``, ignore-padding to ``crop_size``, random ``crop_size``
    square crop, horizontal flip with probability 0.5 — image and mask alike."""

    def __init__(self, crop_size: int, scale_range: tuple[float, float], ignore_index: int) -> None:
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.ignore_index = ignore_index

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand(()))
        if scale != 1.0:
            image, mask = rescale(image, mask, scale)
        c = self.crop_size
        image, mask = pad_to(image, mask, c, c, self.ignore_index)
        h, w = image.shape[-2:]
        top = int(torch.randint(h - c + 1, ()))
        left = int(torch.randint(w - c + 1, ()))
        image = image[:, top : top + c, left : left + c]
        mask = mask[top : top + c, left : left + c]
        if float(torch.rand(())) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image.contiguous(), mask.contiguous()


class EvalTransform:
    """The full image (``crop_size=None``), or a centre ``crop_size`` square crop
    (ignore-padded when the image is smaller). No resizing: labels are scored at full resolution."""

    def __init__(self, crop_size: int | None, ignore_index: int) -> None:
        self.crop_size = crop_size
        self.ignore_index = ignore_index

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if self.crop_size is None:
            return image, mask
        c = self.crop_size
        image, mask = pad_to(image, mask, c, c, self.ignore_index)
        h, w = image.shape[-2:]
        top, left = (h - c) // 2, (w - c) // 2
        return image[:, top : top + c, left : left + c], mask[top : top + c, left : left + c]


class PadCollate:
    """Stack ``(image, mask)`` pairs after padding each (bottom/right) to the batch's largest
    height and width rounded up to a multiple of ``multiple`` (the model's output stride).
    Padded pixels are black in the image and ``ignore_index`` in the mask, so they are never
    scored nor trained on."""

    def __init__(self, multiple: int, ignore_index: int) -> None:
        self.multiple = multiple
        self.ignore_index = ignore_index

    def __call__(self, batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        m = self.multiple
        height = m * math.ceil(max(image.shape[-2] for image, _ in batch) / m)
        width = m * math.ceil(max(image.shape[-1] for image, _ in batch) / m)
        padded = [pad_to(image, mask, height, width, self.ignore_index) for image, mask in batch]
        return torch.stack([p[0] for p in padded]), torch.stack([p[1] for p in padded])
