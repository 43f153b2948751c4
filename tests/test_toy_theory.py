"""Exact theory of the binary model (samat_toy.theory) against Monte Carlo and the paper."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from samat_toy import theory

P, ETA, N = 0.75, 0.3, 30
PARAMS = [(0.75, 0.3, 30), (0.6, 0.05, 1000), (0.9, 1.0, 1), (0.95, 0.2, 100)]


def _monte_carlo(w1: float, eps: float, rng: np.random.Generator, size: int) -> float:
    """Accuracy of sign(w1 x1 + x2 + ... + x_{n+1}) after the worst ℓ∞ attack of budget ``eps``
    on the non-robust features (each moved by ``-eps * y``, against its unit weight)."""
    y = rng.choice([-1.0, 1.0], size=size)
    x1 = np.where(rng.random(size) < P, y, -y)
    rest = ETA * y[:, None] + rng.standard_normal((size, N)) - eps * y[:, None]
    return float(np.mean(np.sign(w1 * x1 + rest.sum(axis=1)) == y))


@pytest.mark.parametrize("w1", [-2.0, 0.0, 1.83, 5.0, 12.0])
def test_accuracy_matches_monte_carlo(w1: float) -> None:
    rng = np.random.default_rng(1234)
    size = 200_000
    u = theory.accuracy(w1, P, ETA, N)
    assert abs(_monte_carlo(w1, 0.0, rng, size) - u) < 3 * math.sqrt(u * (1 - u) / size)
    eps = 0.1
    r = theory.robust_accuracy(w1, P, ETA, N, eps)
    assert abs(_monte_carlo(w1, eps, rng, size) - r) < 3 * math.sqrt(r * (1 - r) / size)


def test_accuracy_is_vectorised() -> None:
    w = np.linspace(-3, 3, 7)
    u = theory.accuracy(w, P, ETA, N)
    assert u.shape == (7,)
    assert u[3] == pytest.approx(theory.accuracy(0.0, P, ETA, N))


@pytest.mark.parametrize(("p", "eta", "n"), PARAMS)
def test_standard_optimum_is_thm_4_1(p: float, eta: float, n: int) -> None:
    assert theory.wr_standard(p, eta, n) == pytest.approx(
        theory.wr_standard_closed(p, eta, n), rel=1e-6
    )


@pytest.mark.parametrize(("p", "eta", "n"), PARAMS)
@pytest.mark.parametrize("frac", [0.1, 0.5, 0.9])
def test_at_optimum_is_thm_4_2(p: float, eta: float, n: int, frac: float) -> None:
    eps = frac * eta
    assert theory.wr_at(p, eta, n, eps) == pytest.approx(
        theory.wr_at_closed(p, eta, n, eps), rel=1e-6
    )


def test_at_needs_eps_below_eta() -> None:
    for fn in (theory.wr_at, theory.wr_at_closed):
        with pytest.raises(ValueError, match="eps"):
            fn(P, ETA, N, ETA)


@pytest.mark.parametrize(("p", "eta", "n"), PARAMS)
@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5, 2.0])
def test_sam_optimum_exceeds_standard_and_equalises(p: float, eta: float, n: int, eps: float):
    """Thm 4.3: W_R^SAM > W_R*, and u(w - eps) = u(w + eps) at the optimum."""
    wr = theory.wr_sam(p, eta, n, eps)
    assert wr > theory.wr_standard_closed(p, eta, n)
    w = n * wr
    assert theory.accuracy(w - eps, p, eta, n) == pytest.approx(
        theory.accuracy(w + eps, p, eta, n), rel=0, abs=1e-12
    )


def test_sam_at_zero_radius_is_standard() -> None:
    assert theory.wr_sam(P, ETA, N, 0.0) == theory.wr_standard(P, ETA, N)


@pytest.mark.parametrize(("p", "eta", "n"), PARAMS)
def test_sam_second_order_shift(p: float, eta: float, n: int) -> None:
    """The exact shift W_R^SAM/W_R* - 1 is eps^2/(3n) (1 + O(eps^2/n)) for a radius on w1."""
    wr_star = theory.wr_standard_closed(p, eta, n)
    errors = []
    for f in (0.1, 0.03, 0.01):  # eps/sqrt(n): u varies on the scale sqrt(n)
        eps = f * math.sqrt(n)
        shift = theory.wr_sam(p, eta, n, eps) / wr_star - 1
        errors.append(abs(shift / (eps**2 / (3 * n)) - 1))
    assert errors[0] > 5 * errors[1] > 25 * errors[2]
    assert errors[2] < 1e-4


@pytest.mark.parametrize("n", [1, 2, 30, 300])
@pytest.mark.parametrize("scale", ["w1", "W_R", "w1/sqrt(n)"])
def test_thm_4_4_matches_no_radius_scaling(n: int, scale: str) -> None:
    """Paper's shift (2/3) eps^2 over the exact shift -> 2n / s^2 for a radius eps*s on w1
    (s = 1, n, sqrt(n)): it matches only by coincidence (radius on W_R with n = 2)."""
    s = {"w1": 1.0, "W_R": float(n), "w1/sqrt(n)": math.sqrt(n)}[scale]
    eps = 0.01 / s if scale == "W_R" else 0.01
    wr_star = theory.wr_standard_closed(P, ETA, n)
    exact_shift = theory.wr_sam(P, ETA, n, eps * s) - wr_star
    paper_shift = theory.wr_sam_approx(P, ETA, n, eps) - wr_star
    assert paper_shift / exact_shift == pytest.approx(2 * n / s**2, rel=1e-3)


def test_thm_4_4_relative_error_vanishes_with_eps() -> None:
    """(approx - exact)/exact -> 0 as eps -> 0, as (2/3 - 1/(3n)) eps^2."""
    for eps in (0.2, 0.05, 0.01):
        exact = theory.wr_sam(P, ETA, N, eps)
        rel = (theory.wr_sam_approx(P, ETA, N, eps) - exact) / exact
        assert rel == pytest.approx((2 / 3 - 1 / (3 * N)) * eps**2, rel=1e-3)


def test_robust_accuracy_increases_in_wr_below_wr_at() -> None:
    for eps in (0.05, 0.15, 0.25):
        wr_at = theory.wr_at_closed(P, ETA, N, eps)
        below = np.linspace(1e-3, 1 - 1e-3, 200) * wr_at
        assert np.all(np.diff(theory.robust_accuracy(N * below, P, ETA, N, eps)) > 0)
        above = np.linspace(1.001, 3, 200) * wr_at
        assert np.all(np.diff(theory.robust_accuracy(N * above, P, ETA, N, eps)) < 0)


def test_duality_table() -> None:
    grid = [0.0, 0.05, 0.1, 0.2]
    rows = theory.duality_table(P, ETA, N, grid)
    assert [row["eps"] for row in rows] == grid
    for row in rows:
        assert all(type(v) is float for v in row.values())
        assert row["wr_st_exact"] == pytest.approx(row["wr_st_closed"], rel=1e-6)
        assert row["wr_at_exact"] == pytest.approx(row["wr_at_closed"], rel=1e-6)
        assert row["wr_sam_exact"] == pytest.approx(row["wr_sam_second_order"], rel=1e-6)
        if row["eps"] > 0:  # the paper's trade-off: AT most robust, ST most accurate
            assert row["wr_st_exact"] < row["wr_sam_exact"] < row["wr_at_exact"]
            assert row["clean_acc_st"] >= row["clean_acc_sam"] > row["clean_acc_at"]
            assert row["robust_acc_at"] > row["robust_acc_sam"] >= row["robust_acc_st"]
    with pytest.raises(ValueError, match="eta"):
        theory.duality_table(P, ETA, N, [0.1, ETA])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"p": 0.5}, "p"),
        ({"p": 1.0}, "p"),
        ({"eta": 0.0}, "eta"),
        ({"eta": math.inf}, "eta"),
        ({"n": 0}, "n"),
        ({"n": 3.0}, "n"),
        ({"n": True}, "n"),
        ({"eps": -0.1}, "eps"),
    ],
)
def test_invalid_inputs_name_the_parameter(kwargs: dict, name: str) -> None:
    args = {"p": P, "eta": ETA, "n": N, "eps": 0.1} | kwargs
    with pytest.raises(ValueError, match=f"^{name} "):
        theory.wr_sam(**args)


@pytest.mark.parametrize(("p", "eta", "n"), [(0.99, 0.01, 5), (0.5 + 1e-10, 0.3, 30)])
def test_flat_accuracy_raises(p: float, eta: float, n: int) -> None:
    """u is flat to double precision on the bracket: Phi(-103) underflows / p - 1/2 is tiny."""
    with pytest.raises(RuntimeError, match="flat"):
        theory.wr_standard(p, eta, n)


def test_package_and_theory_do_not_import_torch() -> None:
    code = "import sys, samat_toy, samat_toy.theory; sys.exit('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0
