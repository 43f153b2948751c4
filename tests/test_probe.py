"""Attacks checked against the model before training (samat/probe.py): the probe, the messages,
and a run whose attack is refused training and writing nothing."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from samat import runner as run_module
from samat.errors import SamatError
from samat.hookspecs import hookimpl
from samat.interfaces import Attack, AttackMismatch, Probe
from samat.probe import check_attacks, make_probe
from samat.recipe import recipe_from_dict
from samat.testing import FixtureTask, registered

pytestmark = pytest.mark.usefixtures("fixture_task")


class Refusing(Attack):
    """Refuses every model with ``error``; counts its checks."""

    name = "refusing"

    def __init__(self, error: ValueError | None = None) -> None:
        self.error, self.checked = error, []

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return x

    def check(self, probe: Probe) -> None:
        self.checked.append(probe)
        if self.error is not None:
            raise self.error


class Unchecked(Attack):
    """Keeps the default check."""

    name = "unchecked"

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return x


class Counting(FixtureTask):
    """The fixture task counting ``eval_dataset`` calls, describing a ``dataset`` if given."""

    def __init__(self, dataset: str | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.dataset, self.reads = dataset, 0

    def eval_dataset(self) -> Any:
        self.reads += 1
        return super().eval_dataset()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **({"dataset": self.dataset} if self.dataset else {})}


def randomness() -> tuple[Any, ...]:
    """The next draw of every global generator (consumes them)."""
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_the_probe_is_the_first_eval_example_and_changes_nothing() -> None:
    task = FixtureTask(n_train=8, n_test=8, n_classes=4, seed=3)
    model = task.build_model()
    model.train()
    model.norm.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    probe = make_probe(task, model)
    assert model.hidden.training and not model.norm.training  # modes restored one by one
    after = randomness()
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    assert after == randomness()  # no generator was drawn from
    x, y = task.eval_dataset()[0]
    assert torch.equal(probe.x, x[None]) and torch.equal(probe.y, y[None])
    model.eval()
    assert torch.equal(probe.output, model(x[None]).detach())
    assert probe.n_outputs == 4 and probe.bounds == (0.0, 1.0)
    assert not probe.output.requires_grad
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_n_outputs_is_none_for_outputs_without_classes() -> None:
    y = torch.zeros(1)
    assert Probe(torch.zeros(1, 2), y, torch.zeros(1), None).n_outputs is None
    assert Probe(torch.zeros(1, 2), y, {"logits": torch.zeros(1, 3)}, None).n_outputs is None
    assert Probe(torch.zeros(1, 2), y, torch.zeros(1, 5, 4, 4), None).n_outputs == 5


def test_no_probe_is_built_when_no_attack_checks() -> None:
    task = Counting(n_train=8, n_test=8)
    check_attacks([("eval.attacks.0", Unchecked())], task, task.build_model(), "fixture")
    assert task.reads == 0
    accepting = Refusing()
    check_attacks([("eval.attacks.0", Unchecked()), ("eval.attacks.1", accepting)], task,
                  task.build_model(), "fixture")
    assert task.reads == 1 and len(accepting.checked) == 1


@pytest.mark.parametrize(("error", "dataset", "message"), [
    (AttackMismatch("100, but the model has 3 outputs", key="n_classes",
                    fix="set n_classes: 3"), "blobs",
     "eval.attacks.1.n_classes: 100, but the model has 3 outputs (task fixture, dataset blobs);"
     " set n_classes: 3"),
    (AttackMismatch("refusing attacks images, but the task's inputs are float32 of shape (1, 8)",
                    fix="choose another attack"), None,
     "eval.attacks.1: refusing attacks images, but the task's inputs are float32 of shape "
     "(1, 8) (task fixture); choose another attack"),
    (AttackMismatch("no fit"), None, "eval.attacks.1: no fit (task fixture)"),
    (ValueError("cannot attack this"), None, "eval.attacks.1: cannot attack this (task fixture)"),
], ids=["key-and-fix", "no-key", "problem-only", "plain-value-error"])
def test_a_refusal_is_one_line_naming_path_key_task_and_fix(
        error: ValueError, dataset: str | None, message: str) -> None:
    task = Counting(dataset, n_train=8, n_test=8)
    refusing = Refusing(error)
    with pytest.raises(SamatError) as raised:
        check_attacks([("eval.attacks.0", Refusing()), ("eval.attacks.1", refusing)], task,
                      task.build_model(), "fixture")
    assert str(raised.value) == message
    assert len(refusing.checked) == 1


class _RefusingPlugin:
    @hookimpl
    def samat_register_attacks(self, register: Any) -> None:
        register("refusing", lambda model, loss_fn=None, n_classes=7: Refusing(AttackMismatch(
            f"{n_classes}, but the model has 3 outputs", "n_classes", "set n_classes: 3")),
            "refuses every model")


RECIPE = {
    "task": {"name": "fixture", "n_train": 32, "n_test": 16},
    "device": "cpu",
    "train": {"epochs": 1, "batch_size": 16},
    "eval": {"attacks": [{"name": "fgsm", "eps": 0.1}, {"name": "refusing"}]},
}


def test_a_run_whose_attack_is_refused_trains_nothing_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fit(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(run_module.Trainer, "fit", fit)
    recipe = recipe_from_dict({**RECIPE, "output_dir": str(tmp_path / "run")})
    expected = ("eval.attacks.1.n_classes: 7, but the model has 3 outputs (task fixture); "
                "set n_classes: 3")
    with registered(_RefusingPlugin(), "refusing_plugin"):
        with pytest.raises(SamatError) as raised:
            run_module.run("r.yaml", recipe=recipe)
        assert str(raised.value) == expected
        with pytest.raises(SamatError, match="eval.attacks.1.n_classes: 7"):
            run_module.build_components(recipe)
    assert list(tmp_path.iterdir()) == []
