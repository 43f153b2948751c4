"""The paper's binary robust/non-robust feature model as a trainable task.

A bias-free linear model on ``n + 1`` features trained with the logistic loss. The logistic model
is well specified here: ``log P(y=1|x)/P(y=-1|x) = L x1 + 2 eta (x2 + ... + x_{n+1})`` with
``L = ln p - ln(1-p)``, so the population minimiser of the loss has ``W_R = W_R*`` of Thm 4.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from samat import Accuracy, Bounds, Task, check_int
from samat_toy.theory import duality_table

MAX_VALUES = 10**9
"""Most feature values (examples x (n + 1)) one split may hold: the data live in memory."""


class SignScoreLinear(nn.Module):
    """``w.x`` without bias, as an ``(N,)`` score whose sign is the prediction.

    The weight starts at zero: training starts from the same point whatever the torch seed, and
    no feature is favoured at the start.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, 1, bias=False)
        nn.init.zeros_(self.linear.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).squeeze(-1)


class SignAccuracy(Accuracy):
    """Accuracy of ``(N,)`` scores whose sign is the predicted ±1 label."""

    def predict(self, output: Tensor) -> Tensor:
        return torch.where(output >= 0, 1, -1)


class ToyDualityTask(Task):
    """``y`` uniform ±1; ``x[:, 0] = y`` w.p. ``p`` else ``-y`` (robust); ``x[:, 1:]`` i.i.d.
    ``N(eta*y, 1)`` (``n`` non-robust features). Train and test sets come from independent
    streams of a numpy generator seeded by ``seed``. ``theory_eps``: the ``eps`` grid of the
    ``duality_table`` in ``report`` (each in ``[0, eta)``). Accuracy scores the ``(N,)``
    outputs by their sign against the ±1 targets (:class:`SignAccuracy`)."""

    metric = "accuracy"
    input_bounds: Bounds = None

    def __init__(
        self,
        p: float = 0.75,
        eta: float = 0.3,
        n: int = 30,
        n_train: int = 4096,
        n_test: int = 4096,
        seed: int = 0,
        theory_eps: Sequence[float] = (0.05, 0.1, 0.2),
    ) -> None:
        for name, value, low in (("n_train", n_train, 1), ("n_test", n_test, 1), ("seed", seed, 0)):
            check_int(name, value, low)
            if name != "seed" and isinstance(n, Integral) and value * (n + 1) > MAX_VALUES:
                raise ValueError(f"{name} * (n + 1) = {value * (n + 1):.3g} feature values exceed "
                                 f"the {MAX_VALUES:.0e} this in-memory task holds; lower {name} "
                                 "or n")
        if isinstance(theory_eps, str) or not isinstance(theory_eps, Sequence) or not all(
                isinstance(e, Real) and not isinstance(e, bool) for e in theory_eps):
            raise ValueError(f"theory_eps must be a list of numbers in [0, eta), got "
                             f"{theory_eps!r}")
        if isinstance(eta, Real) and eta > 0 and not all(0 <= e < eta for e in theory_eps):
            raise ValueError(f"theory_eps values must be in [0, eta={eta}), got "
                             f"{list(theory_eps)}")
        self.theory_eps = tuple(float(e) for e in theory_eps)
        try:
            self._theory = duality_table(p, eta, n, self.theory_eps)  # validates p, eta, n, eps
        except RuntimeError as exc:  # a saturated model: the exact optima are out of reach
            raise ValueError(f"p={p}, eta={eta}, n={n}, theory_eps={list(self.theory_eps)}: the "
                             f"exact theory cannot be computed ({exc}); use less extreme "
                             "values") from None
        self.p, self.eta, self.n = float(p), float(eta), int(n)
        self.n_train, self.n_test, self.seed = int(n_train), int(n_test), int(seed)

    def _sample(self, stream: int, size: int) -> torch.utils.data.TensorDataset:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(2)[stream])
        y = rng.choice(np.array([-1.0, 1.0]), size=size)
        agree = rng.random(size) < self.p
        x = np.empty((size, self.n + 1))
        x[:, 0] = np.where(agree, y, -y)
        x[:, 1:] = self.eta * y[:, None] + rng.standard_normal((size, self.n))
        return torch.utils.data.TensorDataset(
            torch.from_numpy(x).float(), torch.from_numpy(y).float()
        )

    def train_dataset(self) -> torch.utils.data.TensorDataset:
        return self._sample(0, self.n_train)

    def eval_dataset(self) -> torch.utils.data.TensorDataset:
        return self._sample(1, self.n_test)

    def new_metric(self) -> SignAccuracy:
        return SignAccuracy()

    def build_model(self) -> nn.Module:
        return SignScoreLinear(self.n + 1)

    def model_spec(self) -> dict[str, Any]:
        """The number of features of the linear model; its score's sign is the label."""
        return {"architecture": {"n_features": self.n + 1}, "classes": ["-1", "+1"],
                "input_shape": [self.n + 1],
                "output": "one score per example; its sign is the predicted label (-1 or +1)"}

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Logistic loss ``mean(softplus(-y * score))`` for ``y`` in {-1, +1}."""
        return nn.functional.softplus(-target * output).mean()

    def example_losses(self, output: Tensor, target: Tensor) -> Tensor:
        """Logistic loss ``softplus(-y * score)`` of each example."""
        return nn.functional.softplus(-target * output)

    def input_mask(self) -> Tensor:
        """Attacks may change the non-robust features only (Thm 4.2's threat model)."""
        mask = torch.ones(1, self.n + 1)
        mask[0, 0] = 0.0
        return mask

    def report(self, model: nn.Module) -> dict[str, Any]:
        """Learned ``W_R = w1 / (w2 + ... + w_{n+1})`` (NaN if that sum is 0) and the theory."""
        w = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
        if w.numel() != self.n + 1:
            raise ValueError(f"expected {self.n + 1} weights, the model has {w.numel()}")
        w1, rest = float(w[0]), w[1:]
        total = float(rest.sum())
        return {
            "w_r": w1 / total if total != 0 else math.nan,
            "w_robust": w1,
            "w_nonrobust_mean": float(rest.mean()),
            "theory": [dict(row) for row in self._theory],
        }

    def describe(self) -> dict[str, Any]:
        return {
            "distribution": "binary robust/non-robust feature model (paper Section 4)",
            "p": self.p,
            "eta": self.eta,
            "n_nonrobust": self.n,
            "n_features": self.n + 1,
            "robust_feature_index": 0,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "seed": self.seed,
        }
