"""Weight perturbations as the trainer uses them: plain step, SAM, ASAM."""

from __future__ import annotations

import torch
from torch import nn

from samat.optim import SAM
from samat.weight import ASAMStep, PlainStep, SAMStep


def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    return model, torch.randn(16, 6), torch.randint(0, 3, (16,))


def test_plain_step_is_one_sgd_step() -> None:
    model, x, y = setup()
    reference = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    model, x, y = setup()
    step = PlainStep(model.parameters(), torch.optim.SGD, {"lr": 0.5})
    result = step.step(model, nn.functional.cross_entropy, x, y)
    assert torch.isclose(result.loss, loss)
    for p, p0, g in zip(model.parameters(), reference, grads, strict=True):
        assert torch.allclose(p, p0 - 0.5 * g)


def test_sam_step_matches_sam_optimizer_by_hand_and_updates_bn_once() -> None:
    model, x, y = setup()
    sam = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.5)
    nn.functional.cross_entropy(model(x), y).backward()
    sam.first_step(zero_grad=True)
    model[1].track_running_stats = False
    nn.functional.cross_entropy(model(x), y).backward()
    model[1].track_running_stats = True
    sam.second_step(zero_grad=True)
    expected = [p.detach().clone() for p in model.parameters()]
    expected_bn = model[1].running_mean.clone()

    model, x, y = setup()
    step = SAMStep(model.parameters(), torch.optim.SGD, {"lr": 0.5}, rho=0.1)
    for p in model.parameters():  # left-over gradients (e.g. from attack crafting) are ignored
        p.grad = torch.full_like(p, 100.0)
    step.step(model, nn.functional.cross_entropy, x, y)
    for p, e in zip(model.parameters(), expected, strict=True):
        assert torch.allclose(p, e)
    assert torch.equal(model[1].running_mean, expected_bn)
    assert int(model[1].num_batches_tracked) == 1
    assert step.describe() == {"name": "sam", "rho": 0.1, "adaptive": False}


def test_asam_is_adaptive_sam() -> None:
    model, _, _ = setup()
    step = ASAMStep(model.parameters(), torch.optim.SGD, {"lr": 0.1})
    assert step.describe() == {"name": "asam", "rho": 0.5, "adaptive": True}
    assert step.optimizer.param_groups[0]["adaptive"] is True
