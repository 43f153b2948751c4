"""ToyDualityTask: data, loss, threat model, report, and training to the theoretical optimum."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.special import ndtr

from samat_toy import theory
from samat_toy.task import ToyDualityTask

P, ETA, N = 0.75, 0.3, 30


def test_datasets_follow_the_distribution() -> None:
    task = ToyDualityTask(p=P, eta=ETA, n=N, n_train=20_000, n_test=1000, seed=3)
    x, y = task.train_dataset().tensors
    assert x.shape == (20_000, N + 1) and y.shape == (20_000,)
    assert x.dtype == y.dtype == torch.float32
    assert set(y.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(y.mean())) < 0.03  # balanced labels (std 0.007)
    assert set(x[:, 0].unique().tolist()) == {-1.0, 1.0}
    assert float((x[:, 0] == y).float().mean()) == pytest.approx(P, abs=0.015)  # std 0.003
    signed = (x[:, 1:] * y[:, None]).double()
    assert torch.allclose(signed.mean(0), torch.full((N,), ETA, dtype=torch.double), atol=0.04)
    assert torch.allclose(signed.std(0), torch.ones(N, dtype=torch.double), atol=0.04)
    assert task.eval_dataset().tensors[0].shape == (1000, N + 1)


def test_datasets_are_seeded_and_independent() -> None:
    a, b = ToyDualityTask(seed=1), ToyDualityTask(seed=1)
    assert torch.equal(a.train_dataset().tensors[0], b.train_dataset().tensors[0])
    assert torch.equal(a.eval_dataset().tensors[0], b.eval_dataset().tensors[0])
    assert not torch.equal(a.train_dataset().tensors[0], a.eval_dataset().tensors[0])
    assert not torch.equal(
        a.train_dataset().tensors[0], ToyDualityTask(seed=2).train_dataset().tensors[0]
    )


def test_model_and_loss() -> None:
    task = ToyDualityTask(n=N)
    model = task.build_model()
    x, y = task.train_dataset().tensors
    assert torch.count_nonzero(model(x)) == 0  # zero init
    with torch.no_grad():
        next(model.parameters()).normal_()
    out = model(x)
    assert out.shape == (len(y),)
    manual = np.mean(np.log1p(np.exp(-y.numpy().astype(float) * out.detach().numpy())))
    assert float(task.loss(out.detach(), y)) == pytest.approx(manual, rel=1e-5)
    losses = task.example_losses(out.detach(), y)  # what ESAM ranks examples by
    assert losses.shape == (len(y),)
    torch.testing.assert_close(losses.mean(), task.loss(out.detach(), y))


def test_input_mask_protects_the_robust_feature() -> None:
    task = ToyDualityTask(n=N)
    mask = task.input_mask()
    assert mask.shape == (1, N + 1) and mask.dtype == torch.float32
    assert mask[0, 0] == 0 and torch.all(mask[0, 1:] == 1)
    assert task.input_bounds is None and task.metric == "accuracy"


def test_report_and_describe() -> None:
    task = ToyDualityTask(p=P, eta=ETA, n=N, theory_eps=[0.1, 0.2])
    model = task.build_model()
    assert math.isnan(task.report(model)["w_r"])  # zero weights: W_R undefined
    with torch.no_grad():
        next(model.parameters()).copy_(torch.tensor([[3.0] + [0.5] * N]))
    report = task.report(model)
    assert report["w_r"] == pytest.approx(3.0 / (0.5 * N))
    assert report["w_robust"] == 3.0 and report["w_nonrobust_mean"] == 0.5
    assert [row["eps"] for row in report["theory"]] == [0.1, 0.2]
    assert report["theory"] == theory.duality_table(P, ETA, N, [0.1, 0.2])
    json.dumps(report, allow_nan=False)
    described = task.describe()
    assert described["n_features"] == N + 1 and described["p"] == P
    json.dumps(described, allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_train": 0}, "n_train"),
        ({"n_test": 2.5}, "n_test"),
        ({"seed": -1}, "seed"),
        ({"p": 1.2}, "p"),
        ({"n": 0}, "n"),
        ({"theory_eps": [0.1, ETA]}, "eps"),
    ],
)
def test_invalid_parameters(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ToyDualityTask(**kwargs)


def test_training_reaches_the_bayes_optimum() -> None:
    """Full-batch gradient descent on the logistic loss recovers the population minimiser
    w1 = ln(p/(1-p)), w_i = 2 eta, whose W_R is Thm 4.1's W_R*, and its accuracy."""
    task = ToyDualityTask(p=P, eta=ETA, n=N, n_train=4096, n_test=20_000, seed=0)
    torch.manual_seed(0)
    model = task.build_model()
    x, y = task.train_dataset().tensors
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        task.loss(model(x), y).backward()
        opt.step()

    report = task.report(model)
    assert report["w_r"] == pytest.approx(theory.wr_standard_closed(P, ETA, N), rel=0.05)
    assert report["w_robust"] == pytest.approx(math.log(P / (1 - P)), rel=0.1)
    assert report["w_nonrobust_mean"] == pytest.approx(2 * ETA, rel=0.1)

    best = 100 * theory.accuracy(N * theory.wr_standard(P, ETA, N), P, ETA, N)
    w = next(model.parameters()).detach().double()[0].numpy()
    scale, mean = np.linalg.norm(w[1:]), ETA * w[1:].sum()
    population = 100 * (P * ndtr((w[0] + mean) / scale) + (1 - P) * ndtr((mean - w[0]) / scale))
    assert best - 1.0 < population <= best + 1e-9
    loader = torch.utils.data.DataLoader(task.eval_dataset(), batch_size=4096)
    test_acc = task.evaluate(model, loader)["accuracy"]
    assert abs(test_acc - best) < 1.5  # std of a 20k-sample accuracy: 0.14 points
