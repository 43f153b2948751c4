"""The fixture task owned by core: Gaussian blobs in ``[0, 1]`` and an MLP with a BatchNorm
layer, registered as task ``fixture`` in this process (:func:`fixture_plugin`) or in every
process started with :func:`fixture_env`'s environment."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from samat import plugins
from samat.checks import check_int, check_number
from samat.hookspecs import Register, hookimpl
from samat.interfaces import (
    Bounds,
    Task,
)

PLUGIN_NAME = "samat_fixture"
"""The name :func:`fixture_plugin` registers the fixture plugin under."""
TASK_NAME = "fixture"
"""The name :class:`FixtureTask` is registered as."""
EXAMPLE: dict[str, Any] = {"n_train": 64, "n_test": 32}
"""Parameters of a small fixture task (the registration's ``example``)."""


class FixtureNet(nn.Module):
    """``out(relu(norm(hidden(x.flatten(1)))))``: an MLP whose ``norm`` is a ``BatchNorm1d``
    (or an ``Identity``)."""

    def __init__(self, n_inputs: int, hidden: int, n_classes: int, batchnorm: bool) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_inputs, hidden)
        self.norm = nn.BatchNorm1d(hidden) if batchnorm else nn.Identity()
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(self.norm(self.hidden(x.flatten(1)))))


class FixtureTask(Task):
    """``n_classes`` Gaussian blobs in ``n_features`` dimensions, clamped to ``[0, 1]``.

    Feature ``f`` is about 0.7 in class ``f % n_classes``'s centre and about 0.3 in the others'
    (plus a little jitter drawn from ``seed``); each input is its class centre plus
    ``N(0, noise^2)`` noise per feature. Train and test sets are independent draws around the
    same centres. ``image_size``: inputs are instead ``(3, image_size, image_size)`` images
    (``n_features`` is then ``3 * image_size**2``), for attacks that need images.

    The model is a :class:`FixtureNet` (``batchnorm=False`` puts an ``Identity`` in the
    BatchNorm's place, e.g. for data-parallel equality tests, where per-replica batch
    statistics would differ) initialised from ``seed``: the same parameters give the same data
    and the same initial model, whatever the global RNG state.
    """

    metric = "accuracy"
    input_bounds: Bounds = (0.0, 1.0)

    def __init__(
        self,
        n_train: int = 512,
        n_test: int = 256,
        n_features: int = 8,
        n_classes: int = 3,
        hidden: int = 32,
        noise: float = 0.25,
        batchnorm: bool = True,
        image_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n_train = check_int("n_train", n_train)
        self.n_test = check_int("n_test", n_test)
        self.image_size = check_int("image_size", image_size, optional=True)
        self.shape: tuple[int, ...] = (check_int("n_features", n_features),)
        if self.image_size is not None:
            self.shape = (3, self.image_size, self.image_size)
        self.n_features = math.prod(self.shape)
        self.n_classes = check_int("n_classes", n_classes, 2)
        self.hidden = check_int("hidden", hidden)
        self.noise = check_number("noise", noise, minimum=0)
        if not isinstance(batchnorm, bool):
            raise ValueError(f"batchnorm must be true or false, got {batchnorm!r}")
        self.batchnorm = batchnorm
        self.seed = check_int("seed", seed, 0)
        classes = torch.arange(self.n_classes)[:, None]
        own = torch.arange(self.n_features) % self.n_classes == classes
        jitter = torch.rand(self.n_classes, self.n_features, generator=self._generator(0))
        self.centres = 0.3 + 0.4 * own.float() + 0.1 * (jitter - 0.5)

    def _generator(self, stream: int) -> torch.Generator:
        """Independent streams per seed: 0 centres, 1 training set, 2 test set, 3 model."""
        return torch.Generator().manual_seed(4 * self.seed + stream)

    def _sample(self, stream: int, size: int) -> TensorDataset:
        generator = self._generator(stream)
        y = torch.randint(0, self.n_classes, (size,), generator=generator)
        noise = torch.randn(size, self.n_features, generator=generator)
        x = (self.centres[y] + self.noise * noise).clamp(0.0, 1.0)
        return TensorDataset(x.reshape(size, *self.shape), y)

    def train_dataset(self) -> TensorDataset:
        return self._sample(1, self.n_train)

    def eval_dataset(self) -> TensorDataset:
        return self._sample(2, self.n_test)

    def build_model(self) -> FixtureNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(4 * self.seed + 3)
            return FixtureNet(self.n_features, self.hidden, self.n_classes, self.batchnorm)

    def model_spec(self) -> dict[str, Any]:
        """A :class:`FixtureNet`'s size, and the shape of one input."""
        return {"architecture": {"n_inputs": self.n_features, "hidden": self.hidden,
                                 "n_classes": self.n_classes, "batchnorm": self.batchnorm},
                "input_shape": list(self.shape), "output": "logits over the classes"}

    def describe(self) -> dict[str, Any]:
        return {"distribution": "Gaussian blobs clamped to [0, 1]", "n_train": self.n_train,
                "n_test": self.n_test, "input_shape": list(self.shape),
                "n_classes": self.n_classes, "hidden": self.hidden, "noise": self.noise,
                "batchnorm": self.batchnorm, "seed": self.seed}


class FixturePlugin:
    """A plugin object registering :class:`FixtureTask` as task ``fixture``."""

    @hookimpl
    def samat_register_tasks(self, register: Register) -> None:
        register(TASK_NAME, FixtureTask,
                 "Gaussian blobs in [0, 1], MLP with BatchNorm (samat.testing; tests only)",
                 example=EXAMPLE, model_builder=FixtureNet)


@contextmanager
def registered(plugin: object, name: str) -> Iterator[None]:
    """``plugin`` registered in this process under ``name`` for the ``with`` block."""
    plugins.register_plugin(plugin, name)
    try:
        yield
    finally:
        plugins.unregister_plugin(name)


def fixture_plugin() -> AbstractContextManager[None]:
    """Task ``fixture`` (:class:`FixtureTask`) registered in this process for the ``with``
    block (plugin ``samat_fixture``)."""
    return registered(FixturePlugin(), PLUGIN_NAME)


SITECUSTOMIZE = '''"""Written by samat.testing.fixture_env: registers task fixture at start-up."""
try:
    from samat.plugins import register_plugin
    from samat.testing import PLUGIN_NAME, FixturePlugin
except ImportError:  # another interpreter without samat
    pass
else:
    register_plugin(FixturePlugin(), PLUGIN_NAME)
'''


def fixture_env(directory: str | Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment (``env``, default ``os.environ``) in which every Python process started
    registers task ``fixture`` at start-up, as :func:`fixture_plugin` does in-process, so that
    subprocesses (``samat run``, ``samat sweep --jobs``, ``samat run --nproc``, torchrun
    workers) know it: a ``sitecustomize.py`` written to ``directory`` and put first on
    ``PYTHONPATH``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    base = dict(os.environ if env is None else env)
    path = [str(directory), *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    return {**base, "PYTHONPATH": os.pathsep.join(path)}
