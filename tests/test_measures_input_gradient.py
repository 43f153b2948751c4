"""``input_gradient_norm`` against the analytic input gradient of the toy model's logistic
loss, per-example independence, embeddings for token inputs; and what it must leave as it
found."""

from __future__ import annotations

import math

import pytest
import torch
from measure_fixtures import assert_untouched, batches, batchnorm_model, model_state, toy
from torch import Tensor, nn

from samat.interfaces import Task
from samat.measures import InputGradientNorm


@pytest.mark.parametrize(("norm", "p"), [("l2", 2.0), ("l1", 1.0), ("linf", math.inf)])
def test_toy_gradient_is_analytic_and_masked(norm: str, p: float) -> None:
    """grad_x softplus(-y w.x) = -y sigmoid(-y w.x) w, zero on the robust feature (the mask)."""
    task, model = toy(n=6, n_test=10)
    data = batches(task, 10, 4)
    w = model.linear.weight.detach()[0]
    x = torch.cat([x for x, _ in data])
    y = torch.cat([y for _, y in data])
    grad = -(y * torch.sigmoid(-y * (x @ w)))[:, None] * w * task.input_mask()
    norms = torch.linalg.vector_norm(grad, p, dim=1)
    values = InputGradientNorm(norm=norm, n_examples=10).measure(model, task, data)
    assert values["input_gradient_norm"] == pytest.approx(float(norms.mean()), rel=1e-6)
    assert values["input_gradient_norm_max"] == pytest.approx(float(norms.max()), rel=1e-6)
    assert values["details"] == {"wrt": "input"}
    assert (values["n_examples"], values["forward_backward_passes"]) == (10, 3)


def test_examples_are_independent_in_eval_mode_and_the_model_is_left_as_found() -> None:
    task, model, data = batchnorm_model()
    before = model_state(model)
    measure = InputGradientNorm(n_examples=12)
    together = measure.measure(model, task, data)
    assert_untouched(model, before, training=True)
    alone = measure.measure(model, task, batches(task, 12, 1, dtype=None))
    assert alone["input_gradient_norm"] == pytest.approx(together["input_gradient_norm"],
                                                         rel=1e-5)
    assert measure.measure(model, task, data) == together


class _Tokens(Task):
    """Token-id inputs: an embedding, a mean over positions and a linear head."""

    def train_dataset(self) -> torch.utils.data.Dataset:
        raise NotImplementedError

    eval_dataset = train_dataset

    def build_model(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Embedding(11, 4), _Mean(), nn.Linear(4, 3))

    def input_embeddings(self, model: nn.Module) -> nn.Module:
        return model[0]


class _Mean(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=1)


def test_token_inputs_are_differentiated_at_the_embeddings() -> None:
    task = _Tokens()
    model = task.build_model()
    ids = torch.tensor([[1, 2, 3], [4, 5, 5]])
    y = torch.tensor([0, 2])
    values = InputGradientNorm(n_examples=2).measure(model, task, [(ids, y)])
    embedded = model[0](ids).detach().requires_grad_()
    loss = nn.functional.cross_entropy(model[2](embedded.mean(dim=1)), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, embedded)
    expected = grad.flatten(1).norm(dim=1).mean()
    assert values["details"] == {"wrt": "embeddings"}
    assert values["input_gradient_norm"] == pytest.approx(float(expected), rel=1e-6)
    assert all(p.grad is None for p in model.parameters())
    assert not model[0]._forward_hooks


def test_token_inputs_without_embeddings_are_refused() -> None:
    task = _Tokens()
    task.input_embeddings = lambda model: None  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="measure input_gradient_norm: the task's inputs are "
                       "torch.int64 tensors, not float tensors"):
        InputGradientNorm().measure(task.build_model(), task, [(torch.tensor([[1]]),
                                                                torch.tensor([0]))])


def test_non_finite_gradients_name_the_measure() -> None:
    task, model = toy(n=2, n_test=4)
    with torch.no_grad():
        model.linear.weight[0, 1] = math.inf
    with pytest.raises(ValueError, match="measure input_gradient_norm: .* not finite"):
        InputGradientNorm().measure(model, task, batches(task, 4, 4))


def test_invalid_norm() -> None:
    with pytest.raises(ValueError, match="norm must be one of l2, l1, linf, got 'l3'"):
        InputGradientNorm(norm="l3")
