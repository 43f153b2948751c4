from __future__ import annotations

import pytest
import torch

from samat.recipe import Schedule
from samat.schedules import build_scheduler


def lrs(schedule: Schedule, total: int, per_epoch: int, lr: float = 0.1) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = build_scheduler(opt, schedule, total, per_epoch)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_paper_step_decay_at_epochs_75_and_90() -> None:
    values = lrs(Schedule("step", milestones=[75, 90], gamma=0.1), total=100 * 3, per_epoch=3)
    assert values[0] == values[74 * 3 + 2] == pytest.approx(0.1)
    assert values[75 * 3] == pytest.approx(0.01) and values[89 * 3 + 2] == pytest.approx(0.01)
    assert values[90 * 3] == pytest.approx(0.001) and values[-1] == pytest.approx(0.001)


def test_cosine_from_lr_to_min() -> None:
    values = lrs(Schedule("cosine", min_lr=0.01), total=100, per_epoch=10)
    assert values[0] == pytest.approx(0.1)
    assert values[50] == pytest.approx(0.01 + 0.09 * 0.5)
    assert min(values) >= 0.01 and values == sorted(values, reverse=True)


def test_poly_power() -> None:
    values = lrs(Schedule("poly", power=0.9), total=10, per_epoch=5)
    assert values[3] == pytest.approx(0.1 * (1 - 3 / 10) ** 0.9)


def test_constant() -> None:
    assert set(lrs(Schedule("constant"), total=5, per_epoch=2)) == {0.1}
