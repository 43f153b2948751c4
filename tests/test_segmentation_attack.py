"""The core PGD, run through the segmentation task's loss, lowers the mIoU of a small trained
DeepLabv3 on the embedded shapes data while staying inside its ε-ball and [0, 1]."""

from __future__ import annotations

import pytest
import torch

from samat import create_attack, create_task
from samat_segmentation.synthetic import make_shapes_image

CROP, N_TRAIN, N_EVAL, STEPS, BATCH = 48, 512, 32, 150, 16


@pytest.fixture(scope="module")
def trained():
    """A DeepLabv3-MobileNetV2 (first 3 stages, random init) trained ~10 s on shapes."""
    torch.manual_seed(0)
    task = create_task("segmentation", crop_size=CROP, encoder="mobilenet_v2", encoder_depth=3,
                       max_eval=N_EVAL, scale_range=[1.0, 1.0])
    pairs = [make_shapes_image(0, "train", i, CROP) for i in range(N_TRAIN)]
    x_train = torch.stack([p[0] for p in pairs])
    y_train = torch.stack([p[1] for p in pairs])
    model = task.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(STEPS):
        idx = torch.randint(0, N_TRAIN, (BATCH,), generator=gen)
        loss = task.loss(model(x_train[idx]), y_train[idx])  # pixel-wise CE, ignore 255
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x, y = task.collate_fn([task.eval_dataset()[i] for i in range(N_EVAL)])
    return task, model, x, y


def miou(task, logits: torch.Tensor, y: torch.Tensor) -> float:
    metric = task.new_metric()
    metric.update(logits, y)
    return metric.compute()["miou"]


def test_trained_model_beats_majority_class(trained) -> None:
    task, model, x, y = trained
    with torch.no_grad():
        clean = miou(task, model(x), y)
    # Predicting "background" everywhere: IoU_bg = background share, other classes 0.
    majority = torch.zeros(y.shape[0], task.num_classes, *y.shape[1:])
    majority[:, 0] = 1.0
    baseline = miou(task, majority, y)
    assert clean > baseline + 5.0, (clean, baseline)  # seen: 28.6 vs 18.8


@pytest.mark.parametrize(("norm", "eps"), [("linf", 8 / 255), ("l2", 1.0)])
def test_core_pgd_lowers_miou_within_bound(trained, norm: str, eps: float) -> None:
    task, model, x, y = trained
    with torch.no_grad():
        clean = miou(task, model(x), y)
    torch.manual_seed(1)
    attack = create_attack("pgd", model, task=task, norm=norm, eps=eps, alpha=eps / 4, steps=5,
                           random_start=True)
    x_adv = attack(x, y)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    with torch.no_grad():
        adv = miou(task, model(x_adv), y)
        loss_clean, loss_adv = float(task.loss(model(x), y)), float(task.loss(model(x_adv), y))
    assert loss_adv > 2.0 * loss_clean, (loss_clean, loss_adv)  # seen: 0.74 -> 3.3-3.7
    assert adv < 0.6 * clean, (clean, adv)  # seen: 28.6 -> 11.7 (linf), 13.0 (l2)
    # the attack is not just noise: a random perturbation of the same size barely matters
    noise = torch.empty_like(x).uniform_(-1, 1)
    if norm == "linf":
        noise = noise * eps
    else:
        noise = noise * (eps / noise.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    with torch.no_grad():
        noisy = miou(task, model((x + noise).clamp(0, 1)), y)
    assert adv < noisy - 8.0, (clean, noisy, adv)  # seen: noise 27.0-27.2
