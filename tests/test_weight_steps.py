"""Weight perturbations as the trainer uses them: plain step, SAM, ASAM."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from samat.interfaces import NonFiniteStep
from samat.weight import SAM, ASAMStep, PlainStep, SAMStep


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


# -- non-finite values are caught before they reach the weights ---------------------------------
def _nan_on_call(k: int):
    """cross-entropy, except NaN on the k-th call (1-based)."""
    calls = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        loss = nn.functional.cross_entropy(output, target)
        return loss * float("nan") if len(calls) == k else loss

    return loss_fn


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Weights and optimizer state (BatchNorm statistics move in any train-mode forward; the
    trainer restores them when it skips a step)."""
    tensors = [t.detach().clone() for t in model.parameters()]
    for state in optimizer.state.values():
        tensors += [v.clone() for v in state.values() if isinstance(v, torch.Tensor)]
    return tensors


def _unchanged(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return len(before) == len(after) and all(
        torch.equal(a, b) for a, b in zip(before, after, strict=True))


STEPS = {
    "none": lambda params: PlainStep(params, torch.optim.SGD, {"lr": 0.5, "momentum": 0.9}),
    "sam": lambda params: SAMStep(params, torch.optim.SGD, {"lr": 0.5, "momentum": 0.9},
                                  rho=0.1),
    "asam": lambda params: ASAMStep(params, torch.optim.SGD, {"lr": 0.5, "momentum": 0.9}),
}


@pytest.mark.parametrize("name", sorted(STEPS))
@pytest.mark.parametrize("bad_call", [1, 2])  # the clean pass; SAM's perturbed pass
def test_a_nan_loss_raises_before_any_weight_or_state_changes(name: str, bad_call: int) -> None:
    if name == "none" and bad_call == 2:
        pytest.skip("a plain step has one pass")
    model, x, y = setup()
    step = STEPS[name](model.parameters())
    step.step(model, nn.functional.cross_entropy, x, y)  # optimizer state exists
    before = _snapshot(model, step.optimizer)
    with pytest.raises(NonFiniteStep) as caught:
        step.step(model, _nan_on_call(bad_call), x, y)
    assert _unchanged(before, _snapshot(model, step.optimizer))
    assert math.isnan(caught.value.value)
    assert caught.value.what == ("loss" if bad_call == 1 else "loss at the perturbed weights")
    assert all(p.grad is None for p in model.parameters())
    step.step(model, nn.functional.cross_entropy, x, y)  # and the next step works normally
    assert not _unchanged(before, _snapshot(model, step.optimizer))


def test_an_infinite_gradient_norm_stops_sam_with_the_weights_restored() -> None:
    model, x, y = setup()
    step = STEPS["sam"](model.parameters())
    before = _snapshot(model, step.optimizer)

    def huge_gradient(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(output, target)
        return loss + (loss - loss.detach()) * 1e38  # finite value, gradient overflows

    with pytest.raises(NonFiniteStep, match="gradient norm inf"):
        step.step(model, huge_gradient, x, y)
    assert _unchanged(before, _snapshot(model, step.optimizer))
    assert step.optimizer._saved is None  # no step left in progress


def test_replicas_agree_through_the_hook() -> None:
    model, x, y = setup()
    step = STEPS["none"](model.parameters())
    step.agree = lambda finite: False  # another replica saw a NaN
    with pytest.raises(NonFiniteStep, match="on another replica"):
        step.step(model, nn.functional.cross_entropy, x, y)
