"""Segmentation transforms: image/mask stay aligned through random scale/crop/flip, masks are
resized with nearest neighbours, padding is image 0 / mask 255, the collate pads to the output
stride, and evaluation keeps the full image."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from segmentation_fixtures import build_voc
from torch.nn import functional as F

from samat import create_task
from samat_segmentation.transforms import EvalTransform, PadCollate, TrainTransform

IGNORE = 255
CLASSES = (0, 3, 7)  # not consecutive: a bilinear mask resize would create 1, 2, 4, ...
CODES = torch.tensor([0.2, 0.5, 0.9])  # image value of a pixel of class CLASSES[i]; all > 0


def coded_pair(height: int = 40, width: int = 56,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A blocky, left/right-asymmetric mask and an image whose 3 channels all equal the code
    of the pixel's class, so the class can be read back from the image."""
    gen = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, len(CLASSES), (height // 8, width // 8), generator=gen)
    blocks[:, 0] = 0
    blocks[:, -1] = 2  # asymmetric: a flip is visible
    index = blocks.repeat_interleave(8, 0).repeat_interleave(8, 1)
    mask = torch.tensor(CLASSES)[index]
    image = CODES[index].expand(3, -1, -1).clone()
    return image, mask


def interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has a single label; the crop's border pixels are left
    out (their bilinear values may mix in pixels outside the crop)."""
    m = F.pad(mask.float()[None, None], (1, 1, 1, 1), value=-1.0)
    hi = F.max_pool2d(m, 3, stride=1)
    lo = -F.max_pool2d(-m, 3, stride=1)
    return (hi == lo)[0, 0]


@pytest.mark.parametrize("scale_range", [(0.5, 2.0), (1.0, 1.0), (0.6, 0.6)])
def test_train_transform_keeps_image_and_mask_aligned(scale_range) -> None:
    transform = TrainTransform(32, scale_range, IGNORE)
    code_of = dict(zip(CLASSES, CODES.tolist(), strict=True))
    torch.manual_seed(0)
    flips, n_checked, n_labelled = set(), 0, 0
    for seed in range(12):
        image, mask = transform(*coded_pair(seed=seed))
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= {*CLASSES, IGNORE}  # nearest: no new labels
        padded = mask == IGNORE
        # padding (only where the rescaled image is smaller than the crop) is exactly image 0
        assert torch.equal(padded, (image == 0).all(0))
        assert (image[:, padded] == 0).all()
        checked = interior(mask) & ~padded
        n_checked, n_labelled = n_checked + int(checked.sum()), n_labelled + int((~padded).sum())
        expected = torch.tensor([code_of[int(c)] for c in mask[checked]])
        for channel in image:
            torch.testing.assert_close(channel[checked], expected, atol=1e-5, rtol=0)
        flips.add(bool(mask[:, 0].eq(CLASSES[2]).any() and not mask[:, 0].eq(CLASSES[0]).any()))
    assert n_checked > 0.2 * n_labelled  # not a vacuous check
    if scale_range == (1.0, 1.0):
        assert flips == {True, False}  # both orientations occur


def test_train_transform_pads_small_images_with_ignore() -> None:
    transform = TrainTransform(32, (1.0, 1.0), IGNORE)
    image, mask = coded_pair(16, 24)
    torch.manual_seed(0)
    out_image, out_mask = transform(image, mask)
    assert out_image.shape == (3, 32, 32) and out_mask.shape == (32, 32)
    assert int((out_mask == IGNORE).sum()) == 32 * 32 - 16 * 24
    assert (out_image[:, out_mask == IGNORE] == 0).all()
    assert sorted(out_mask[out_mask != IGNORE].tolist()) == sorted(mask.flatten().tolist())


@pytest.mark.parametrize("multiple", [8, 16])
def test_collate_pads_to_stride_multiple(multiple: int) -> None:
    collate = PadCollate(multiple, IGNORE)
    a = (torch.rand(3, 17, 23) * 0.9 + 0.1, torch.randint(0, 4, (17, 23)))
    b = (torch.rand(3, 20, 9) * 0.9 + 0.1, torch.randint(0, 4, (20, 9)))
    x, y = collate([a, b])
    side = -(-23 // multiple) * multiple
    assert x.shape == (2, 3, -(-20 // multiple) * multiple, side) and y.shape == (2, *x.shape[2:])
    for k, (image, mask) in enumerate((a, b)):
        h, w = mask.shape
        assert torch.equal(x[k, :, :h, :w], image) and torch.equal(y[k, :h, :w], mask)
        assert (x[k, :, h:] == 0).all() and (x[k, :, :, w:] == 0).all()
        assert (y[k, h:] == IGNORE).all() and (y[k, :, w:] == IGNORE).all()
    # already a multiple: untouched
    c = (torch.rand(3, multiple, 2 * multiple), torch.randint(0, 4, (multiple, 2 * multiple)))
    x, y = collate([c])
    assert torch.equal(x[0], c[0]) and torch.equal(y[0], c[1])


def test_eval_transform_keeps_full_image_or_centre_crops() -> None:
    image, mask = coded_pair(40, 56)
    out_image, out_mask = EvalTransform(None, IGNORE)(image, mask)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)
    crop_image, crop_mask = EvalTransform(32, IGNORE)(image, mask)
    assert torch.equal(crop_image, image[:, 4:36, 12:44])
    assert torch.equal(crop_mask, mask[4:36, 12:44])


def test_task_eval_data_is_full_size_voc_images(tmp_path: Path) -> None:
    build_voc(tmp_path)
    task = create_task("segmentation", dataset="voc2012", root=str(tmp_path), crop_size=16)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    names = (base / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    sizes = []
    for i, name in enumerate(names):
        with Image.open(base / "JPEGImages" / f"{name}.jpg") as img:
            width, height = img.size
        image, mask = task.eval_dataset()[i]
        assert image.shape == (3, height, width) and mask.shape == (height, width)
        sizes.append((height, width))
    assert len(set(sizes)) > 1  # different sizes, none cropped to crop_size
    x, y = task.collate_fn([task.eval_dataset()[i] for i in range(len(names))])
    assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
    height, width = (max(s[k] for s in sizes) for k in (0, 1))
    assert x.shape[-2:] == (-(-height // 8) * 8, -(-width // 8) * 8)
    # training samples are crop_size squares
    image, mask = task.train_dataset()[0]
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16)
