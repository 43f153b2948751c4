"""samat.testing: the fixture task (data, model, training), its registration helpers, and
contract checks that catch what they check."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from samat import plugins
from samat.batchnorm import frozen_bn_stats
from samat.errors import UnknownNameError
from samat.factories import create_task
from samat.interfaces import (
    Accuracy,
    Attack,
    InputPerturbation,
    Measure,
    StepResult,
    Task,
    WeightPerturbation,
)
from samat.testing import (
    EXAMPLE,
    FixtureTask,
    check_attack,
    check_input_perturbation,
    check_measure,
    check_task,
    check_weight_perturbation,
    fixture_env,
    fixture_plugin,
)
from samat.weight import PlainStep


def test_data_lie_in_the_bounds_and_follow_the_parameters() -> None:
    task = FixtureTask(n_train=300, n_test=100, n_features=5, n_classes=4, seed=2)
    x, y = task.train_dataset().tensors
    assert x.shape == (300, 5) and x.dtype == torch.float32 and y.dtype == torch.int64
    low, high = task.input_bounds
    assert (low, high) == (0.0, 1.0) and float(x.min()) >= low and float(x.max()) <= high
    assert set(y.tolist()) == {0, 1, 2, 3}
    assert task.eval_dataset().tensors[0].shape == (100, 5)
    for c in range(4):  # inputs gather around their class centre
        centre = x[y == c].mean(0)
        assert int(torch.cdist(centre[None], task.centres).argmin()) == c


def test_data_and_model_are_seeded_and_independent() -> None:
    a, b, other = FixtureTask(seed=1), FixtureTask(seed=1), FixtureTask(seed=2)
    for split in ("train_dataset", "eval_dataset"):
        assert torch.equal(getattr(a, split)().tensors[0], getattr(b, split)().tensors[0])
        assert not torch.equal(getattr(a, split)().tensors[0], getattr(other, split)().tensors[0])
    assert not torch.equal(a.train_dataset().tensors[0][:256], a.eval_dataset().tensors[0])
    torch.manual_seed(0)
    first = a.build_model().state_dict()
    rng = torch.get_rng_state()
    torch.manual_seed(1)  # another global state: the same model
    second = b.build_model().state_dict()
    assert all(torch.equal(t, second[k]) for k, t in first.items())
    torch.manual_seed(0)
    a.build_model()
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    assert not torch.equal(other.build_model().hidden.weight, first["hidden.weight"])


def test_model_has_batchnorm_unless_switched_off() -> None:
    model = FixtureTask(n_features=6, hidden=10, n_classes=5).build_model()
    assert isinstance(model.norm, nn.BatchNorm1d) and model(torch.rand(4, 6)).shape == (4, 5)
    plain = FixtureTask(batchnorm=False).build_model()
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())


def test_image_inputs() -> None:
    task = FixtureTask(n_train=20, n_classes=10, image_size=4)
    x, y = task.train_dataset().tensors
    assert x.shape == (20, 3, 4, 4) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert task.build_model()(x).shape == (20, 10)
    assert task.describe()["input_shape"] == [3, 4, 4]


def test_trains_well_above_chance_in_a_few_epochs() -> None:
    task = FixtureTask(seed=0)
    model = task.build_model()
    step = PlainStep(model.parameters(), torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})
    loader = torch.utils.data.DataLoader(task.train_dataset(), batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        model.train()
        for x, y in loader:
            step.step(model, task.loss, x, y)
    x, y = task.eval_dataset().tensors
    result = task.evaluate(model, [(x, y)])
    assert result["accuracy"] > 80 and result["n_examples"] == 256  # chance: 33


def test_describe_is_json() -> None:
    described = json.loads(json.dumps(FixtureTask(n_train=8, seed=4).describe()))
    assert described["n_train"] == 8 and described["seed"] == 4 and described["batchnorm"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_train": 0}, "n_train must be an integer >= 1, got 0"),
    ({"n_classes": 1}, "n_classes must be an integer >= 2, got 1"),
    ({"noise": -0.1}, "noise must be a finite number >= 0"),
    ({"batchnorm": "yes"}, "batchnorm must be true or false"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_invalid_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FixtureTask(**kwargs)


def test_fixture_plugin_registers_for_the_block_only() -> None:
    with pytest.raises(RuntimeError), fixture_plugin():
        entry = plugins.registries().tasks.get("fixture")
        assert entry.plugin == "samat_fixture" and entry.example == EXAMPLE
        task = create_task("fixture", **entry.example)
        assert isinstance(task, FixtureTask) and task.n_train == EXAMPLE["n_train"]
        raise RuntimeError("the test fails here")
    with pytest.raises(UnknownNameError):
        create_task("fixture")
    assert "samat_fixture" not in [i.name for i in plugins.plugin_infos()]


def test_fixture_env_registers_the_task_in_subprocesses(tmp_path: Path) -> None:
    env = fixture_env(tmp_path / "site", {**os.environ, "PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"] == os.pathsep.join([str(tmp_path / "site"), "/elsewhere"])
    listed = subprocess.run([sys.executable, "-m", "samat", "list", "tasks"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "\nfixture " in listed.stdout and "samat_fixture" in listed.stdout
    plain = subprocess.run([sys.executable, "-m", "samat", "list", "tasks"],
                           capture_output=True, text=True, timeout=120)
    assert "samat_fixture" not in plain.stdout


# -- the contract checks catch what they check -------------------------------------------------

class _Small(FixtureTask):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"n_train": 32, "n_test": 16, "seed": 0, **kwargs})


class _OutOfBounds(_Small):
    def eval_dataset(self) -> TensorDataset:
        x, y = super().eval_dataset().tensors
        return TensorDataset(x + 1.0, y)


class _VectorLoss(_Small):
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target, reduction="none")


class _ConstantLoss(_Small):
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return output.sum() * 0.0


class _NoMetricKey(_Small):
    metric = "miou"


class _Unmergeable(_Small):
    def new_metric(self) -> Accuracy:
        class Wrong(Accuracy):
            def state(self) -> list[Tensor]:
                return [torch.tensor([self.correct, 2 * self.total])]

        return Wrong()


class _NotJson(_Small):
    def describe(self) -> dict[str, Any]:
        return {"device": torch.device("cpu")}


class _WideMask(_Small):
    def input_mask(self) -> Tensor:
        return torch.ones(1, self.n_features + 1)


@pytest.mark.parametrize(("task", "message"), [
    (_OutOfBounds(), r"eval inputs lie in .* outside input_bounds"),
    (_VectorLoss(), "loss is not a scalar"),
    (_ConstantLoss(), "gradient is zero everywhere"),
    (_NoMetricKey(), "must hold a finite 'miou'"),
    (_Unmergeable(), "Metric.state.. does not merge"),
    (_NotJson(), r"describe\(\) is not JSON-serialisable"),
    (_WideMask(), "does not broadcast to a batch"),
], ids=["out-of-bounds", "vector-loss", "constant-loss", "no-metric-key", "unmergeable",
        "not-json", "wide-mask"])
def test_check_task_catches(task: Task, message: str) -> None:
    check_task(_Small())  # the unbroken task passes
    with pytest.raises(AssertionError, match=message):
        check_task(task)


class _Perturbation(InputPerturbation):
    """``x + eps * sign(gradient)``, done wrong as ``fault`` says."""

    name = "faulty"

    def __init__(self, fault: str = "", eps: float = 0.1) -> None:
        self.fault, self.eps = fault, eps

    def perturb(self, model: nn.Module, loss_fn: Any, x: Tensor, y: Tensor) -> Tensor:
        x = x.clone().requires_grad_(True)
        with contextlib.nullcontext() if self.fault == "bn" else frozen_bn_stats(model):
            loss = loss_fn(model(x), y)
        if self.fault == "grad":
            loss.backward()
            grad = x.grad
        else:
            (grad,) = torch.autograd.grad(loss, x)
        step = {"ball": 3 * self.eps, "random": self.eps * random.random()}
        x_adv = x + step.get(self.fault, self.eps) * grad.sign()
        if self.fault == "eval":
            model.eval()
        if self.fault == "shape":
            x_adv = x_adv[:, :1]
        return x_adv.clamp(0.0, 1.0).detach()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "eps": self.eps}


@pytest.mark.parametrize(("fault", "message"), [
    ("bn", "changed the model's weights or BatchNorm statistics"),
    ("grad", "left .grad on parameters"),
    ("ball", "left its linf eps=0.1 ball"),
    ("random", "differs between two calls under the same torch seed"),
    ("eval", "left the model in eval mode"),
    ("shape", "returned shape/dtype/device"),
])
def test_check_input_perturbation_catches(fault: str, message: str) -> None:
    check_input_perturbation(_Perturbation(), _Small())
    with pytest.raises(AssertionError, match=message):
        check_input_perturbation(_Perturbation(fault), _Small())


class _Attack(Attack):
    name = "faulty"

    def __init__(self, model: nn.Module, fault: str = "") -> None:
        self.model, self.fault = model, fault

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        perturbation = _Perturbation("bn" if self.fault == "bn" else "")
        if self.fault != "mode":
            modes = [m.training for m in self.model.modules()]
        self.model.eval()
        x_adv = perturbation.perturb(self.model, F.cross_entropy, x, y)
        if self.fault == "bounds":
            x_adv = x_adv + 2
        if self.fault != "mode":
            for module, mode in zip(self.model.modules(), modes, strict=True):
                module.training = mode
        else:
            self.model.train()
        return x_adv


@pytest.mark.parametrize(("fault", "message"), [
    ("mode", "did not restore the train/eval mode of every module .called in eval mode"),
    ("bounds", r"left the bounds \(0.0, 1.0\)"),
])
def test_check_attack_catches(fault: str, message: str) -> None:
    task = _Small()
    model = task.build_model()
    check_attack(_Attack(model), model, task)
    with pytest.raises(AssertionError, match=message):
        check_attack(_Attack(model, fault), model, task)


class _Step(WeightPerturbation):
    """A plain step (two forward passes: the second for "bn"), done wrong as ``fault`` says."""

    name = "faulty"

    def __init__(self, params: Any, fault: str = "") -> None:
        self.optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        self.fault = fault
        self.calls = 0  # outside the optimizer state: lost by a resume

    def step(self, model: nn.Module, loss_fn: Any, x: Tensor, y: Tensor) -> StepResult:
        self.calls += 1
        self.optimizer.zero_grad()
        output = model(x)
        loss = loss_fn(output, y)
        if self.fault != "nan":
            self.check_finite("loss", loss)
        loss.backward()
        if self.fault == "bn":
            model(x)
        if self.fault == "resume":
            for group in self.optimizer.param_groups:
                group["lr"] = 0.1 * self.calls
        self.apply_step()
        return StepResult(loss.detach(), output.detach())


@pytest.mark.parametrize(("fault", "message"), [
    ("nan", "a NaN loss at call 1 of a step did not raise NonFiniteStep"),
    ("bn", "must update BatchNorm statistics once"),
    ("resume", "takes another step than the original"),
])
def test_check_weight_perturbation_catches(fault: str, message: str) -> None:
    check_weight_perturbation(lambda params: _Step(params), _Small())
    with pytest.raises(AssertionError, match=message):
        check_weight_perturbation(lambda params: _Step(params, fault), _Small())


class _Measure(Measure):
    """The summed squared weights, done wrong as ``fault`` says."""

    name = "faulty"
    key = "size"
    n_examples = 4

    def __init__(self, fault: str = "") -> None:
        self.fault, self.calls = fault, 0

    def measure(self, model: nn.Module, task: Task, batches: list) -> dict[str, Any]:
        self.calls += 1
        size = sum(float((p.detach() ** 2).sum()) for p in model.parameters())
        if self.fault == "weights":
            with torch.no_grad():
                next(model.parameters()).add_(1)
        if self.fault == "mode":
            model.train()
        values: dict[str, Any] = {"size": size, "examples": sum(len(y) for _, y in batches)}
        if self.fault == "nan":
            values["size"] = math.nan
        if self.fault == "list":
            values["sizes"] = [size]
        if self.fault == "random":
            values["size"] += self.calls
        return values


@pytest.mark.parametrize("name", ["sam_sharpness", "hessian", "input_gradient_norm"])
def test_check_measure_passes_the_builtin_measures(name: str) -> None:
    entry = plugins.registries().measures.get(name)
    values = check_measure(entry.factory(**entry.example, seed=0), FixtureTask(n_test=8))
    assert values["n_examples"] == entry.example["n_examples"]


@pytest.mark.parametrize(("fault", "message"), [
    ("weights", "changed the model's weights or buffers"),
    ("mode", "left modules in train mode"),
    ("nan", r"\['size'\] is nan: values must be finite numbers"),
    ("list", "put anything else under 'details'"),
    ("random", "gives other values on a second call"),
])
def test_check_measure_catches(fault: str, message: str) -> None:
    assert check_measure(_Measure(), _Small())["examples"] == 4
    with pytest.raises(AssertionError, match=message):
        check_measure(_Measure(fault), _Small())
