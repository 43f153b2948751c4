"""Exact theory of the paper's binary model (Section 4); numpy/scipy only.

Model: ``y`` uniform in {-1, +1}; ``x1 = y`` with probability ``p`` and ``-y`` otherwise (the
robust feature); ``x2..x_{n+1}`` i.i.d. ``N(eta*y, 1)`` (non-robust). The classifier is
``sign(w.x)`` with ``w2 = ... = w_{n+1} = 1``, so only ``w1`` matters and ``W_R = w1/n``.

Accuracy. ``y*x1 = +-1`` and ``y*(x2+...+x_{n+1}) ~ N(eta*n, n)``, so with
``a = (w1 + eta n)/sqrt(n)`` and ``b = (eta n - w1)/sqrt(n)``,
``u(w1) = P(y w.x > 0) = p Phi(a) + (1-p) Phi(b)``.

Shape of ``u``. ``phi(a)/phi(b) = exp(-2 eta w1)``, hence
``u'(w1) = (1-p) phi(b)/sqrt(n) * (exp(L - 2 eta w1) - 1)`` with ``L = ln p - ln(1-p) > 0``:
``u`` rises strictly up to ``w1* = L/(2 eta)`` and falls after it, so Thm 4.1,
``W_R* = L/(2 n eta)``, is exact. The ℓ∞ attack of Thm 4.2 (budget ``eps < eta`` on the
non-robust features only) shifts ``y*(x2+...+x_{n+1})`` by ``-n eps``, i.e. replaces ``eta`` by
``eta - eps``, so Thm 4.2 is exact too.

SAM, implemented literally: ``max_w1 min_{|d| <= eps} u(w1 + d)``, the radius acting on ``w1``.
As ``u`` is unimodal the inner minimum is ``g(w1) = min(u(w1-eps), u(w1+eps))``; ``g`` rises
below ``w1* - eps``, falls above ``w1* + eps``, and in between one term rises while the other
falls, so the maximiser is the point of ``[w1* - eps, w1* + eps]`` where
``u(w1-eps) = u(w1+eps)`` (Thm 4.3).

Numerical optima. Bounded scalar searches minimise the error ``1 - u`` less a constant, computed
from small Gaussian tails so that it keeps its precision where ``u`` rounds to 1 or to ``p``, on
brackets that hold the maximiser by the sign analysis above: ``[0, L/eta']`` for ST and AT
(``eta' = eta`` or ``eta - eps``; twice the needed width) and ``[w1* - eps, w1* + eps]`` for SAM.
ST/AT optima are flat maxima, found to ~1e-8 relative; SAM's objective has a kink at its
optimum and is resolved more finely. When the error is flat to double precision on the bracket
(a tail underflows, e.g. ``p=0.99, eta=0.01, n=5``, or ``p - 1/2`` is ~1e-10) a RuntimeError is
raised.

Thm 4.4's scaling (finding). Expanding ``u(w*+d+eps) = u(w*+d-eps)`` to third order gives
``d = -eps^2 u3/(6 u2)`` (``u2, u3``: second and third derivatives at ``w*``), and the factorised
``u'`` gives ``u3/u2 = -2 w*/n``. Hence, for every ``p, eta, n``,

    W_R^SAM = W_R* (1 + eps^2/(3n) + O(eps^4))          (``wr_sam_second_order``)

for the radius on ``w1``. Rescaling the radius to ``W_R = w1/n`` gives a relative shift
``n eps^2/3``, and to ``w1/sqrt(n)`` (the argument of ``Phi``) ``eps^2/3``. None is the paper's
``(2/3) eps^2`` (``wr_sam_approx``) for general ``n``: the paper's shift ``W_R^approx - W_R*``
over the exact one tends to ``2n``, ``2/n`` and ``2`` respectively as ``eps -> 0``. E.g. at
p=0.75, eta=0.3, n=30, eps=0.1 on ``w1``: exact ``W_R^SAM/W_R* - 1 = 1.1111e-4`` vs the
paper's ``6.667e-3``. Both tend to ``W_R*``, so their relative difference (reported by
``duality_table``) vanishes as ``eps -> 0`` under any scaling; the shift is what disagrees.
Consequently Thm 4.5's matching condition becomes ``eta/eps_AT = 1 + 3n/eps_SAM^2`` for this
reading, not ``2 eta/eps_AT = 2 + 3/eps_SAM^2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import ndtr

from samat import check_int, check_number

ArrayLike = float | np.ndarray

_XATOL = 1e-13
"""Absolute tolerance on ``w1`` of the bounded scalar searches."""
_SQRT_EPS = math.sqrt(np.finfo(float).eps)


def _check(p: float, eta: float, n: int, eps: float | None = None) -> None:
    check_number("p", p, minimum=0.5, maximum=1, strict_min=True, strict_max=True)
    check_number("eta", eta, minimum=0, strict_min=True)
    check_int("n", n)
    if eps is not None:
        check_number("eps", eps, minimum=0)


def _log_odds(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _u(w1: ArrayLike, p: float, eta: float, n: int) -> ArrayLike:
    """Accuracy without input checks; ``eta`` may be <= 0 (attacked means)."""
    w1 = np.asarray(w1, dtype=float)
    s = math.sqrt(n)
    return p * ndtr((w1 + eta * n) / s) + (1.0 - p) * ndtr((eta * n - w1) / s)


def _error_objective(p: float, eta: float, n: int) -> Callable[[float], float]:
    """``1 - u(w1)`` minus a constant, to minimise, from the Gaussian tails that are small near
    the maximiser: ``1 - u`` itself if ``w1* <= eta n`` (there ``u`` may round to 1), else
    ``1 - u - (1 - p) = p Phi(-a) - (1-p) Phi(b)`` (there ``u`` may round to ``p``)."""
    s = math.sqrt(n)
    if _log_odds(p) / (2 * eta) <= eta * n:
        return lambda w: float(p * ndtr(-(w + eta * n) / s) + (1 - p) * ndtr((w - eta * n) / s))
    return lambda w: float(p * ndtr(-(w + eta * n) / s) - (1 - p) * ndtr((eta * n - w) / s))


def _search(objective: Callable[[float], float], mid: float, half: float) -> float:
    """Offset from ``mid`` in ``[-half, half]`` minimising ``objective`` (bounded Brent)."""
    res = minimize_scalar(
        lambda t: objective(mid + t), bounds=(-half, half), method="bounded",
        options={"xatol": _XATOL, "maxiter": 1000},
    )
    if not res.success:
        raise RuntimeError(f"bounded search around {mid} failed: {res.message}")
    return float(res.x)


def _argmin(objective: Callable[[float], float], lo: float, hi: float) -> float:
    """Minimiser of ``objective``, which must lie strictly inside ``[lo, hi]``.

    scipy's stopping rule adds ``sqrt(machine eps) * |x|`` to ``xatol``, so the search runs over
    the offset from the bracket's midpoint, then again over a window around the first result
    that spans that tolerance, which keeps ``|x|`` and the tolerance small.
    """
    offset = _search(objective, (lo + hi) / 2, (hi - lo) / 2)
    best = (lo + hi) / 2 + offset
    if not objective(best) < min(objective(lo), objective(hi)):
        raise RuntimeError(
            f"bounded search on [{lo}, {hi}] found no interior optimum: the error is flat to"
            " double precision there (saturated p, eta, n or tiny eps)"
        )
    return best + _search(objective, best, 2 * (_SQRT_EPS * abs(offset) + _XATOL))


def accuracy(w1: ArrayLike, p: float, eta: float, n: int) -> ArrayLike:
    """Clean accuracy ``u(w1)`` (a probability) of ``sign(w.x)`` with ``w2..w_{n+1} = 1``."""
    _check(p, eta, n)
    return _u(w1, p, eta, n)


def robust_accuracy(w1: ArrayLike, p: float, eta: float, n: int, eps: float) -> ArrayLike:
    """Accuracy under Thm 4.2's ℓ∞ attack of budget ``eps`` on the non-robust features."""
    _check(p, eta, n, eps)
    return _u(w1, p, eta - eps, n)


def wr_standard(p: float, eta: float, n: int) -> float:
    """``W_R`` maximising clean accuracy, by bounded search."""
    _check(p, eta, n)
    return _argmin(_error_objective(p, eta, n), 0.0, _log_odds(p) / eta) / n


def wr_at(p: float, eta: float, n: int, eps: float) -> float:
    """``W_R`` maximising robust accuracy at budget ``eps < eta``, by bounded search."""
    _check(p, eta, n, eps)
    if eps >= eta:
        raise ValueError(f"eps must be < eta for AT (else W_R^AT is infinite), got {eps!r}")
    eta_adv = eta - eps
    return _argmin(_error_objective(p, eta_adv, n), 0.0, _log_odds(p) / eta_adv) / n


def wr_sam(p: float, eta: float, n: int, eps: float) -> float:
    """``W_R`` maximising ``min_{|d| <= eps} u(w1 + d)`` (radius on ``w1``), by bounded search."""
    _check(p, eta, n, eps)
    if eps == 0:
        return wr_standard(p, eta, n)
    err = _error_objective(p, eta, n)
    w_st = _log_odds(p) / (2 * eta)
    return _argmin(lambda w: max(err(w - eps), err(w + eps)), w_st - eps, w_st + eps) / n


def wr_standard_closed(p: float, eta: float, n: int) -> float:
    """Thm 4.1: ``W_R* = (ln p - ln(1-p)) / (2 n eta)``."""
    _check(p, eta, n)
    return _log_odds(p) / (2 * n * eta)


def wr_at_closed(p: float, eta: float, n: int, eps: float) -> float:
    """Thm 4.2: ``W_R^AT = (ln p - ln(1-p)) / (2 n (eta - eps))``."""
    _check(p, eta, n, eps)
    if eps >= eta:
        raise ValueError(f"eps must be < eta for AT (else W_R^AT is infinite), got {eps!r}")
    return _log_odds(p) / (2 * n * (eta - eps))


def wr_sam_approx(p: float, eta: float, n: int, eps: float) -> float:
    """Thm 4.4 as the paper states it: ``W_R* (1 + (2/3) eps^2)``."""
    _check(p, eta, n, eps)
    return wr_standard_closed(p, eta, n) * (1 + 2 * eps**2 / 3)


def wr_sam_second_order(p: float, eta: float, n: int, eps: float) -> float:
    """Small-``eps`` expansion derived here (radius on ``w1``): ``W_R* (1 + eps^2/(3n))``."""
    _check(p, eta, n, eps)
    return wr_standard_closed(p, eta, n) * (1 + eps**2 / (3 * n))


def duality_table(p: float, eta: float, n: int, eps_grid: Iterable[float]) -> list[dict]:
    """One row per ``eps`` (each in ``[0, eta)``), all values floats.

    Keys: ``eps``; ``wr_st_exact``, ``wr_st_closed`` (Thm 4.1); ``wr_at_exact``, ``wr_at_closed``
    (Thm 4.2); ``wr_sam_exact``, ``wr_sam_approx`` (Thm 4.4 as stated),
    ``wr_sam_approx_rel_error`` (``(approx - exact) / exact``), ``wr_sam_second_order``; and
    ``clean_acc_{st,at,sam}``, ``robust_acc_{st,at,sam}``: accuracy (a probability) of each exact
    optimum, clean and under the attack of budget ``eps``. ``eps`` is both AT's input budget and
    SAM's radius on ``w1``, as in the paper.
    """
    _check(p, eta, n)
    eps_values = [float(e) for e in eps_grid]
    for e in eps_values:
        _check(p, eta, n, e)
        if e >= eta:
            raise ValueError(f"eps_grid values must be < eta={eta}, got {e}")
    wr_st = wr_standard(p, eta, n)
    rows = []
    for e in eps_values:
        wr = {"st": wr_st, "at": wr_at(p, eta, n, e), "sam": wr_sam(p, eta, n, e)}
        approx = wr_sam_approx(p, eta, n, e)
        row = {
            "eps": e,
            "wr_st_exact": wr_st,
            "wr_st_closed": wr_standard_closed(p, eta, n),
            "wr_at_exact": wr["at"],
            "wr_at_closed": wr_at_closed(p, eta, n, e),
            "wr_sam_exact": wr["sam"],
            "wr_sam_approx": approx,
            "wr_sam_approx_rel_error": (approx - wr["sam"]) / wr["sam"],
            "wr_sam_second_order": wr_sam_second_order(p, eta, n, e),
        }
        for name, value in wr.items():
            row[f"clean_acc_{name}"] = float(_u(n * value, p, eta, n))
            row[f"robust_acc_{name}"] = float(_u(n * value, p, eta - e, n))
        rows.append(row)
    return rows
