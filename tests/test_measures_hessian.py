"""``hessian`` against exact answers: linear regression (H = (2/N) A^T A with A = [X 1]) and
quadratics 1/2 w^T A w (H = A), for power iteration, Lanczos and both traces; and what it must
leave as it found."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from measure_fixtures import assert_untouched, batchnorm_model, model_state
from torch import Tensor, nn

from samat.interfaces import Task
from samat.measures import HessianSpectrum
from samat.measures.hessian import HessianOperator


class _Data(Task):
    """A task for the exact Hessians: only ``loss`` and ``build_model`` matter here."""

    def train_dataset(self) -> torch.utils.data.Dataset:
        raise NotImplementedError

    eval_dataset = train_dataset


class Regression(_Data):
    """Mean squared error of a linear model with bias."""

    def __init__(self, d: int) -> None:
        self.d = d

    def build_model(self) -> nn.Module:
        return nn.Linear(self.d, 1).double()

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output.squeeze(-1), target)


class Quadratic(_Data):
    """``1/2 w^T A w`` of a model that outputs its weights whatever the input."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = torch.from_numpy(a)

    def build_model(self) -> nn.Module:
        class Weights(nn.Module):
            def __init__(self, n: int) -> None:
                super().__init__()
                self.w = nn.Parameter(torch.linspace(-1, 1, n, dtype=torch.float64))

            def forward(self, x: Tensor) -> Tensor:
                return self.w

        return Weights(len(self.a))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return 0.5 * output @ self.a @ output


def _regression(n: int = 40, d: int = 5, sizes: tuple[int, ...] = (16, 16, 8)
                ) -> tuple[Task, nn.Module, list, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)) * np.arange(1, d + 1)  # distinct eigenvalues
    y = rng.standard_normal(n)
    task = Regression(d)
    model = task.build_model()
    bounds = np.cumsum((0, *sizes))
    data = [(torch.from_numpy(x[a:b]), torch.from_numpy(y[a:b])) for a, b in
            zip(bounds, bounds[1:], strict=False)]
    augmented = np.hstack([x, np.ones((n, 1))])
    return task, model, data, 2 / n * augmented.T @ augmented


def _quadratic(eigenvalues: list[float], seed: int = 0) -> tuple[Task, nn.Module, list, np.ndarray]:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues),) * 2))
    a = q @ np.diag(eigenvalues) @ q.T
    task = Quadratic(a)
    return task, task.build_model(), [(torch.zeros(1), torch.zeros(1))], a


def _top(h: np.ndarray, k: int) -> list[float]:
    values = np.linalg.eigvalsh(h)
    return [float(v) for v in values[np.argsort(-np.abs(values))][:k]]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["power", "lanczos"])
def test_regression_eigenvalues_and_exact_trace(method: str, dtype: torch.dtype) -> None:
    task, model, data, h = _regression()
    model, data = model.to(dtype), [(x.to(dtype), y.to(dtype)) for x, y in data]
    values = HessianSpectrum(top_k=3, method=method, iterations=500,
                             tol=1e-10 if dtype == torch.float64 else 1e-6,
                             trace="exact").measure(model, task, data)
    assert values["details"]["eigenvalues"] == pytest.approx(_top(h, 3), rel=1e-4)
    assert values["top_eigenvalue"] == values["details"]["eigenvalues"][0]
    assert all(values["details"]["converged"])
    assert values["trace"] == pytest.approx(float(np.trace(h)), rel=1e-4)
    assert values["n_parameters"] == 6
    assert values["hvp_calls"] == values["details"]["iterations_used"] + 6
    if method == "lanczos":
        assert values["details"]["iterations_used"] <= 6  # exact within the 6-dim space


def test_the_products_are_those_of_the_whole_set() -> None:
    """Batches of 16, 16 and 8 weigh as the 40 examples they hold."""
    task, model, data, h = _regression()
    hvp = HessianOperator(model, task, list(model.parameters()), data)
    v = torch.arange(6, dtype=torch.float64)
    assert torch.allclose(hvp(v), torch.from_numpy(h) @ v, rtol=1e-12)
    assert hvp.calls == 1


@pytest.mark.parametrize("method", ["power", "lanczos"])
def test_largest_magnitude_first_on_an_indefinite_hessian(method: str) -> None:
    task, model, data, a = _quadratic([-5.0, 3.0, 1.0, 0.5, -0.2, 0.1])
    values = HessianSpectrum(top_k=2, method=method, iterations=400, tol=1e-10,
                             trace_samples=0).measure(model, task, data)
    assert values["details"]["eigenvalues"] == pytest.approx([-5.0, 3.0], rel=1e-4)
    assert "trace" not in values


def test_lanczos_finds_repeated_eigenvalues() -> None:
    """A Krylov space sees one copy of a repeated eigenvalue: Lanczos restarts when it closes."""
    task, model, data, _ = _quadratic([4.0, 4.0, 4.0, 1.0, 1.0])
    values = HessianSpectrum(top_k=3, method="lanczos", iterations=20, tol=1e-10,
                             trace_samples=0).measure(model, task, data)
    assert values["details"]["eigenvalues"] == pytest.approx([4.0, 4.0, 4.0], rel=1e-8)


def test_hutchinson_is_exact_for_a_diagonal_hessian() -> None:
    task = Quadratic(np.diag([3.0, -1.0, 0.5, 7.0]))
    values = HessianSpectrum(trace_samples=3).measure(task.build_model(), task,
                                                      [(torch.zeros(1), torch.zeros(1))])
    assert values["trace"] == pytest.approx(9.5, rel=1e-12)
    assert values["trace_std_error"] == pytest.approx(0.0, abs=1e-12)


def test_hutchinson_converges_with_an_honest_standard_error() -> None:
    """Rademacher z: Var(z^T A z) = 2 sum_{i != j} A_ij^2, so the standard error of S samples
    is sqrt(that / S); the estimate lies within a few of them of the trace."""
    eigenvalues = [float(v) for v in np.linspace(0.5, 6, 12)]
    task, model, data, a = _quadratic(eigenvalues, seed=1)
    samples = 400
    values = HessianSpectrum(trace_samples=samples, seed=5).measure(model, task, data)
    off = a - np.diag(np.diag(a))
    expected_error = math.sqrt(2 * float((off ** 2).sum()) / samples)
    assert values["trace_std_error"] == pytest.approx(expected_error, rel=0.2)
    assert abs(values["trace"] - sum(eigenvalues)) <= 4 * values["trace_std_error"]
    assert values["hvp_calls"] == samples + values["details"]["iterations_used"]


def test_leaves_the_model_as_found_and_is_deterministic_for_a_seed() -> None:
    task, model, data = batchnorm_model()
    before = model_state(model)
    measure = HessianSpectrum(top_k=2, iterations=5, trace_samples=3, seed=1)
    first = measure.measure(model, task, data)
    assert_untouched(model, before, training=True)
    assert measure.measure(model, task, data) == first
    other = HessianSpectrum(top_k=2, iterations=5, trace_samples=3, seed=2)
    assert other.measure(model, task, data)["trace"] != first["trace"]


def test_non_finite_products_name_the_measure() -> None:
    task, model, data, _ = _regression()
    with torch.no_grad():
        model.weight[0, 0] = math.inf
    with pytest.raises(ValueError, match="measure hessian: the loss is not finite"):
        HessianSpectrum().measure(model, task, data)


def test_more_eigenvalues_than_parameters_is_refused() -> None:
    task, model, data, _ = _quadratic([1.0, 2.0])
    with pytest.raises(ValueError, match="top_k=3 exceeds the model's 2 parameters"):
        HessianSpectrum(top_k=3).measure(model, task, data)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"top_k": 0}, "top_k must be an integer >= 1"),
    ({"method": "arnoldi"}, "method must be one of power, lanczos"),
    ({"tol": 0}, "tol must be a finite number > 0"),
    ({"trace": "girard"}, "trace must be one of hutchinson, exact"),
    ({"trace_samples": 1}, "trace_samples must be 0 .no trace. or >= 2"),
    ({"method": "lanczos", "top_k": 5, "iterations": 3}, "iterations must be >= top_k=5"),
])
def test_invalid_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HessianSpectrum(**kwargs)
