"""samat's standard AutoAttack against the reference implementation (fra31/auto-attack, the
``pyautoattack`` package RobustBench runs): same model, same images, same robust accuracy.

The model is the image plugin's small CNN trained for about a second on the digits task; the
radius is chosen so that robust accuracy is neither 0 nor the clean accuracy. Each standard
AutoAttack spends 5000 Square queries on the examples still robust at the end, a few seconds
whatever the model: about 15 s (ℓ∞) and 20 s (ℓ2) of one core for both implementations.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import one_thread
from torch.nn import functional as F

from samat import create_task
from samat.factories import create_attack

pytest.importorskip("torchattacks")
pytest.importorskip("sklearn")
pyautoattack = pytest.importorskip("pyautoattack")

N_EVAL = 32
REFERENCE_NORMS = {"linf": "Linf", "l2": "L2"}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def digits() -> tuple[Any, torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The digits task, its small CNN (width 8) after 10 epochs of Adam, and the first
    ``N_EVAL`` held-out examples."""
    task = create_task("image_classification", dataset="digits", model="small_cnn", width=8,
                       augment=False, seed=0)
    train, test = task.train_dataset(), task.eval_dataset()
    x = torch.stack([train[i][0] for i in range(len(train))])
    y = torch.tensor([int(train[i][1]) for i in range(len(train))])
    torch.manual_seed(0)
    model = task.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        for idx in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    x_eval = torch.stack([test[i][0] for i in range(N_EVAL)])
    y_eval = torch.tensor([int(test[i][1]) for i in range(N_EVAL)])
    return task, model, x_eval, y_eval


def correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


@pytest.mark.parametrize("norm, eps", [("linf", 0.03), ("l2", 0.3)])
def test_standard_autoattack_matches_the_reference(digits, norm, eps):
    task, model, x, y = digits
    # samat: built and evaluated as a recipe's `eval.attacks: [{name: autoattack, ...}]` is
    attack = create_attack("autoattack", model, path="eval.attacks.0", task=task, norm=norm,
                           eps=eps)
    ours = task.evaluate(model, [(x, y)], attack)
    reference = pyautoattack.AutoAttack(model, norm=REFERENCE_NORMS[norm], eps=eps,
                                        version="standard", seed=0, device=x.device)
    x_ref, _ = reference.run_standard_evaluation(x, y, batch_size=250)
    n_ref = correct(model, x_ref, y)
    clean = correct(model, x, y)
    assert 0 < n_ref < clean, "the radius must leave some, not all, examples robust"
    assert ours["n_examples"] == N_EVAL
    assert abs(round(ours["accuracy"] * N_EVAL / 100) - n_ref) <= 1
