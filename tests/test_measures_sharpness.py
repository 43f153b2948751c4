"""``sam_sharpness`` against exact answers: the section 4 toy model's closed-form worst case
(per example), a brute-force search on the circle (whole set), SAM's and ASAM's own first
step; and what it must leave as it found."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from measure_fixtures import assert_untouched, batches, batchnorm_model, model_state, toy
from scipy.optimize import minimize_scalar
from torch.nn.functional import softplus

from samat.measures import SAMSharpness
from samat.measures.sharpness import worst_case
from samat.weight.sam import SAM


def _grad(model, task, data) -> list[torch.Tensor]:
    params = list(model.parameters())
    sizes = [len(y) for _, y in data]
    loss = sum(task.loss(model(x), y) * n / sum(sizes)
               for (x, y), n in zip(data, sizes, strict=True))
    return list(torch.autograd.grad(loss, params))


def test_per_example_worst_case_is_the_closed_form_and_one_step_attains_it() -> None:
    """m = 1: max over ||e|| <= rho of softplus(-y (w + e).x) is at e* = -rho y x/||x||, so the
    sharpness is mean_i softplus(-y_i w.x_i + rho ||x_i||) - softplus(-y_i w.x_i)."""
    task, model = toy(n=5, n_test=12)
    data = batches(task, 12, 1)
    w = model.linear.weight.detach()[0]
    x = torch.cat([x for x, _ in data])
    y = torch.cat([y for _, y in data])
    margin = -y * (x @ w)
    exact = float((softplus(margin + 0.1 * x.norm(dim=1)) - softplus(margin)).mean())
    for steps in (1, 3):
        values = SAMSharpness(rho=0.1, steps=steps, m=1, n_examples=12).measure(model, task, data)
        assert values["sharpness"] == pytest.approx(exact, rel=1e-6)
        assert values["loss"] == pytest.approx(float(softplus(margin).mean()), rel=1e-12)
        assert values["epsilon_norm"] == pytest.approx(0.1, rel=1e-12)
        assert (values["n_groups"], values["n_examples"]) == (12, 12)
        assert (values["forward_backward_passes"], values["forward_passes"]) == (12 * steps, 12)


def test_more_steps_never_lose_and_reach_the_optimum_on_the_circle() -> None:
    """The whole set (one eps for all examples) on a 2-weight toy model: the objective is
    convex in eps, so its maximum is on the circle ||e|| = rho; a dense scan of the angle,
    refined by a bounded search, gives it."""
    task, model = toy(n=1, n_test=16, seed=3)
    data = batches(task, 16, 6)  # 6 + 6 + 4: the mean weighs batches by their sizes
    x = torch.cat([x for x, _ in data]).numpy()
    y = torch.cat([y for _, y in data]).numpy()
    w, rho = model.linear.weight.detach()[0].numpy(), 0.8

    def loss(angle: float) -> float:
        e = rho * np.array([math.cos(angle), math.sin(angle)])
        return float(np.logaddexp(0, -y * (x @ (w + e))).mean())

    grid = np.linspace(-math.pi, math.pi, 4001)
    start = grid[int(np.argmax([loss(a) for a in grid]))]
    best = minimize_scalar(lambda a: -loss(a), bounds=(start - 0.01, start + 0.01),
                           method="bounded", options={"xatol": 1e-12})
    optimum = -best.fun - float(np.logaddexp(0, -y * (x @ w)).mean())
    found = [SAMSharpness(rho=rho, steps=k, step_size=rho / 2, n_examples=16)
             .measure(model, task, data)["sharpness"] for k in (1, 2, 4, 8, 40, 200)]
    assert all(a <= b for a, b in zip(found, found[1:], strict=False))
    assert found[0] < optimum * (1 - 1e-4)  # the first step alone does not reach it here
    assert found[-1] == pytest.approx(optimum, rel=1e-6)


def test_one_step_is_sams_first_step() -> None:
    task, model = toy(n=4, n_test=10, seed=1)
    data = batches(task, 10, 4)
    params = list(model.parameters())
    before = model_state(model)
    found = worst_case(model, task, params, data, rho=0.3, steps=1, step_size=0.3)
    assert torch.equal(model.linear.weight, before["linear.weight"])
    sam = SAM(params, torch.optim.SGD, rho=0.3, lr=0.1)
    for p, g in zip(params, _grad(model, task, data), strict=True):
        p.grad = g
    sam.first_step()
    moved = [p.detach() - before[name] for name, p in model.named_parameters()]
    assert all(torch.allclose(e, m, rtol=1e-10, atol=1e-14)
               for e, m in zip(found.epsilon, moved, strict=True))


@pytest.mark.parametrize("eta", [0.0, 0.01])
def test_adaptive_ball_first_step_is_asams_and_stays_in_the_ball(eta: float) -> None:
    """k = 1: eps = rho T^2 g / ||T g|| with T = |w| + eta (samat's ASAM optimizer at eta = 0);
    every found eps has ||T^-1 eps|| = rho (the objective is convex: the maximum is on the
    boundary)."""
    task, model = toy(n=4, n_test=10, seed=2)
    data = batches(task, 10, 10)
    params = list(model.parameters())
    t = [p.detach().abs() + eta for p in params]
    g = _grad(model, task, data)
    tg = torch.cat([(s * gi).flatten() for s, gi in zip(t, g, strict=True)])
    asam = [0.5 * s * s * gi / tg.norm() for s, gi in zip(t, g, strict=True)]
    for steps in (1, 5):
        found = worst_case(model, task, params, data, rho=0.5, steps=steps, step_size=0.5,
                           scale=t)
        ball = torch.cat([(e / s).flatten() for e, s in zip(found.epsilon, t, strict=True)]).norm()
        assert float(ball) == pytest.approx(0.5, rel=1e-12)
        assert found.epsilon_norm == pytest.approx(0.5, rel=1e-12)
        if steps == 1:
            assert all(torch.allclose(e, a, rtol=1e-12)
                       for e, a in zip(found.epsilon, asam, strict=True))
            one = found.perturbed_loss
        else:
            assert found.perturbed_loss >= one
    if eta == 0:
        before = model_state(model)
        sam = SAM(params, torch.optim.SGD, rho=0.5, adaptive=True, lr=0.1)
        for p, gi in zip(params, g, strict=True):
            p.grad = gi
        sam.first_step()
        moved = model.linear.weight.detach() - before["linear.weight"]
        assert torch.allclose(moved, asam[0], rtol=1e-10)
    measured = SAMSharpness(rho=0.5, adaptive=True, eta=eta, n_examples=10).measure(
        model, task, data)
    assert measured["epsilon_norm"] == pytest.approx(0.5, rel=1e-12)


def test_m_sharpness_averages_groups_and_drops_a_short_last_one() -> None:
    task, model = toy(n=3, n_test=10)
    data = batches(task, 10, 4)  # 4 + 4 + 2
    values = SAMSharpness(rho=0.2, steps=2, m=4, n_examples=12).measure(model, task, data)
    alone = [SAMSharpness(rho=0.2, steps=2, n_examples=4).measure(model, task, [b])
             for b in data[:2]]
    assert (values["n_groups"], values["n_examples"]) == (2, 8)
    for key in ("sharpness", "loss", "perturbed_loss"):
        assert values[key] == pytest.approx(sum(a[key] for a in alone) / 2, rel=1e-12)
    with pytest.raises(ValueError, match="no group of m=4 examples among the 2"):
        SAMSharpness(m=4, n_examples=4).measure(model, task, data[2:])


def test_leaves_the_model_as_found_and_is_deterministic() -> None:
    task, model, data = batchnorm_model()
    before = model_state(model)
    measure = SAMSharpness(rho=0.05, steps=3, adaptive=True, n_examples=12)
    first = measure.measure(model, task, data)
    assert_untouched(model, before, training=True)
    assert measure.measure(model, task, data) == first
    assert first["sharpness"] > 0


def test_non_finite_loss_names_the_measure_and_restores_the_weights() -> None:
    """The loss turns NaN at the perturbed weights: the error names the measure, and the
    weights are copied back all the same."""
    task, model = toy(n=2, n_test=4)
    data = batches(task, 4, 4)
    clean = task.loss
    calls = []

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return clean(output, target) * (math.nan if len(calls) > 1 else 1)

    task.loss = loss  # type: ignore[method-assign]
    before = model_state(model)
    with pytest.raises(ValueError, match="measure sam_sharpness: the loss is not finite"):
        SAMSharpness().measure(model, task, data)
    assert len(calls) == 2
    assert_untouched(model, before, training=True)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rho": 0}, "rho must be a finite number > 0"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"step_size": -1.0}, "step_size must be a finite number > 0"),
    ({"adaptive": "yes"}, "adaptive must be true or false"),
    ({"m": 4, "n_examples": 10}, "n_examples must be a multiple of m=4, got 10"),
    ({"m": 4, "batch_size": 8}, "batch_size must be left out with m"),
])
def test_invalid_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SAMSharpness(**kwargs)


def test_m_sets_the_batch_size_and_describe_records_everything() -> None:
    measure = SAMSharpness(m=8, n_examples=64, seed=3)
    assert measure.batch_size == 8
    assert measure.describe() == {
        "name": "sam_sharpness", "rho": 0.05, "steps": 1, "step_size": 0.05, "adaptive": False,
        "eta": None, "m": 8, "n_examples": 64, "batch_size": 8, "seed": 3}
