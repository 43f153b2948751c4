"""``hessian``: the loss Hessian's largest eigenvalues (power iteration with deflation, or
Lanczos) and its trace (Hutchinson, or exactly for small models), from Hessian-vector products
by double backward; the approach of PyHessian (Yao et al. 2020)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from samat.checks import check_choice, check_int, check_number
from samat.interfaces import Task
from samat.measures.common import (
    Batch,
    NamedMeasure,
    check_finite_values,
    evaluating,
    finite,
    mean_loss,
    n_items,
    trainable,
    weights,
)

Operator = Callable[[Tensor], Tensor]
"""``v -> H v`` on flat vectors."""

METHODS = ("power", "lanczos")
TRACES = ("hutchinson", "exact")


class HessianOperator:
    """``v -> H v`` for the Hessian of ``L`` (the example-weighted mean of ``task.loss`` over
    ``batches``) with respect to ``params``, on flat vectors; one batch's double-backward graph
    lives at a time. :attr:`calls` counts the products."""

    def __init__(self, model: nn.Module, task: Task, params: list[nn.Parameter],
                 batches: Sequence[Batch]) -> None:
        self.model, self.task, self.params, self.batches = model, task, params, batches
        self.weights = weights(batches)
        self.sizes = [p.numel() for p in params]
        self.n = sum(self.sizes)
        self.dtype = torch.promote_types(params[0].dtype, torch.float32)
        self.device = params[0].device
        self.calls = 0

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        pieces = [piece.view_as(p).to(p.dtype)
                  for piece, p in zip(v.split(self.sizes), self.params, strict=True)]
        total = [torch.zeros_like(p, dtype=self.dtype) for p in self.params]
        for batch, weight in zip(self.batches, self.weights, strict=True):
            loss = mean_loss(self.model, self.task, batch, weight)
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
            dot = sum((g * u).sum() for g, u in zip(grads, pieces, strict=True)
                      if g is not None and g.requires_grad)
            if not isinstance(dot, Tensor):  # the loss is at most linear in the weights
                continue
            hv = torch.autograd.grad(dot, self.params, allow_unused=True)
            for acc, h in zip(total, hv, strict=True):
                if h is not None:
                    acc += h
        flat = torch.cat([t.reshape(-1) for t in total])
        finite("a Hessian-vector product", flat)
        return flat


@dataclass
class Spectrum:
    """The eigenvalues an eigensolver found, largest magnitude first."""

    eigenvalues: list[float]
    converged: list[bool]
    products: int
    """Hessian-vector products spent."""


def _dot(a: Tensor, b: Tensor) -> float:
    return float(torch.dot(a, b))


def _orthogonalize(v: Tensor, basis: Sequence[Tensor]) -> Tensor:
    """``v`` without its components along the orthonormal ``basis`` (twice, for stability)."""
    for _ in range(2):
        for q in basis:
            v = v - _dot(v, q) * q
    return v


def _random_unit(n: int, generator: torch.Generator, like: Tensor,
                 basis: Sequence[Tensor] = ()) -> Tensor:
    v = torch.randn(n, generator=generator, dtype=like.dtype).to(like.device)
    v = _orthogonalize(v, basis)
    return v / torch.linalg.vector_norm(v)


def power_iteration(hvp: Operator, n: int, top_k: int, iterations: int, tol: float,
                    generator: torch.Generator, like: Tensor) -> Spectrum:
    """The ``top_k`` eigenvalues of largest magnitude by power iteration, each on the
    operator deflated by the eigenvectors found before it (projected out); an eigenvalue has
    converged when its Rayleigh quotient changes by at most ``tol`` relative between two
    iterations (at most ``iterations`` products each)."""
    found: list[Tensor] = []
    values, converged, products = [], [], 0
    for _ in range(top_k):
        v = _random_unit(n, generator, like, found)
        value, done = 0.0, False
        for iteration in range(iterations):
            hv = _orthogonalize(hvp(v), found)
            products += 1
            new = _dot(v, hv)
            size = float(torch.linalg.vector_norm(hv))
            if size == 0:  # v is in the null space
                value, done = 0.0, True
                break
            v = hv / size
            done = iteration > 0 and abs(new - value) <= tol * abs(new)
            value = new
            if done:
                break
        found.append(v)
        values.append(value)
        converged.append(done)
    return Spectrum(values, converged, products)


def lanczos(hvp: Operator, n: int, top_k: int, iterations: int, tol: float,
            generator: torch.Generator, like: Tensor) -> Spectrum:
    """The ``top_k`` Ritz values of largest magnitude of at most ``iterations`` Lanczos steps
    with full reorthogonalization; converged when every residual ``||H y - theta y||`` is at
    most ``tol * |theta|``. When the Krylov space closes (an invariant subspace: it holds one
    copy of each eigenvalue it reaches) the iteration goes on from a fresh random direction
    orthogonal to it, so repeated eigenvalues are found as often as they occur. Keeps the
    whole basis: ``iterations`` vectors of ``n`` values."""
    basis = [_random_unit(n, generator, like)]
    alphas: list[float] = []
    betas: list[float] = []
    steps = min(iterations, n)
    closing = 100 * torch.finfo(like.dtype).eps
    while True:
        w = hvp(basis[-1])
        alphas.append(_dot(w, basis[-1]))
        w = _orthogonalize(w, basis)
        beta = float(torch.linalg.vector_norm(w))
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            t += torch.diag(off, 1) + torch.diag(off, -1)
        theta, s = torch.linalg.eigh(t)
        order = torch.argsort(theta.abs(), descending=True)[:top_k]
        converged = ((beta * s[-1, order]).abs() <= tol * theta[order].abs()).tolist()
        closed = beta <= closing * float(theta.abs().max())
        if len(alphas) >= steps or (not closed and len(alphas) >= top_k and all(converged)):
            break
        if closed:
            betas.append(0.0)
            basis.append(_random_unit(n, generator, like, basis))
        else:
            betas.append(beta)
            basis.append(w / beta)
    if len(alphas) < top_k:
        raise ValueError(f"top_k={top_k} eigenvalues need at least {top_k} Lanczos iterations, "
                         f"got {len(alphas)}")
    return Spectrum([float(theta[i]) for i in order], converged, len(alphas))


def hutchinson(hvp: Operator, n: int, samples: int, generator: torch.Generator,
               like: Tensor) -> tuple[float, float]:
    """The trace ``E[z^T H z]`` over ``samples`` Rademacher vectors ``z``, and the standard
    error of that mean (exact, with error 0, for a diagonal ``H``)."""
    quads = []
    for _ in range(samples):
        z = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int8).to(like) * 2 - 1
        quads.append(_dot(z, hvp(z)))
    values = torch.tensor(quads, dtype=torch.float64)
    return float(values.mean()), float(values.std() / math.sqrt(samples))


def exact_trace(hvp: Operator, n: int, like: Tensor) -> float:
    """``sum_i e_i^T H e_i``: one product per parameter."""
    total = 0.0
    for i in range(n):
        e = torch.zeros(n).to(like)
        e[i] = 1
        total += float(hvp(e)[i])
    return total


class HessianSpectrum(NamedMeasure):
    """Top-``top_k`` eigenvalues (largest magnitude) of the Hessian of the mean loss over the
    measured examples with respect to every trainable parameter, by ``method`` ``power``
    (iteration with deflation) or ``lanczos``, at most ``iterations`` Hessian-vector products
    per eigenvalue (power) or in all (Lanczos) to a relative ``tol``; and its trace, by
    Hutchinson's estimator with ``trace_samples`` Rademacher vectors (0: no trace) or ``exact``
    (one product per parameter). Random vectors come from a generator seeded with ``seed``."""

    name = "hessian"
    key = "top_eigenvalue"

    def __init__(self, top_k: int = 1, method: str = "power", iterations: int = 100,
                 tol: float = 1e-3, trace: str = "hutchinson", trace_samples: int = 10,
                 n_examples: int = 256, batch_size: int | None = None, seed: int = 0) -> None:
        self.top_k = check_int("top_k", top_k)
        self.method = check_choice("method", method, METHODS)
        self.iterations = check_int("iterations", iterations)
        self.tol = check_number("tol", tol, minimum=0, strict_min=True)
        self.trace = check_choice("trace", trace, TRACES)
        self.trace_samples = check_int("trace_samples", trace_samples, 0)
        if self.trace == "hutchinson" and self.trace_samples == 1:
            raise ValueError("trace_samples must be 0 (no trace) or >= 2 (a standard error "
                             "needs two samples), got 1")
        self.n_examples = check_int("n_examples", n_examples)
        self.batch_size = check_int("batch_size", batch_size, optional=True)
        self.seed = check_int("seed", seed, 0)
        if self.method == "lanczos" and self.iterations < self.top_k:
            raise ValueError(f"iterations must be >= top_k={self.top_k} with method lanczos "
                             f"(one Lanczos step per Ritz value at least), got {iterations}")

    def _measure(self, model: nn.Module, task: Task, batches: list[Batch]) -> dict[str, Any]:
        # one stream for the eigensolver, one for the trace: the trace does not depend on
        # the eigensolver's settings
        seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(self.seed).spawn(2)]
        eigen, traced = (torch.Generator().manual_seed(s) for s in seeds)
        with evaluating(model, double_backward=True):
            hvp = HessianOperator(model, task, trainable(model), batches)
            if self.top_k > hvp.n:
                raise ValueError(f"top_k={self.top_k} exceeds the model's {hvp.n} parameters")
            like = torch.empty(0, dtype=hvp.dtype, device=hvp.device)
            solve = power_iteration if self.method == "power" else lanczos
            spectrum = solve(hvp, hvp.n, self.top_k, self.iterations, self.tol, eigen, like)
            values: dict[str, Any] = {"top_eigenvalue": spectrum.eigenvalues[0]}
            if self.trace == "exact":
                values["trace"] = exact_trace(hvp, hvp.n, like)
            elif self.trace_samples:
                values["trace"], values["trace_std_error"] = hutchinson(
                    hvp, hvp.n, self.trace_samples, traced, like)
        values.update(n_examples=sum(map(n_items, batches)), hvp_calls=hvp.calls,
                      n_parameters=hvp.n,
                      details={"eigenvalues": spectrum.eigenvalues,
                               "converged": spectrum.converged,
                               "iterations_used": spectrum.products})
        for i, value in enumerate(spectrum.eigenvalues):
            finite(f"eigenvalue {i + 1}", value)
        return check_finite_values(self.name, values)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "top_k": self.top_k, "method": self.method,
                "iterations": self.iterations, "tol": self.tol, "trace": self.trace,
                "trace_samples": self.trace_samples, "n_examples": self.n_examples,
                "batch_size": self.batch_size, "seed": self.seed}
