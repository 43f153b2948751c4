"""Every run exports its model (``model.safetensors`` or a save_pretrained directory, and
``model.json``); :func:`samat.load_model` gives it back without the data and without pickle."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import one_thread
from torch import nn

import samat
from samat import runner as run_module
from samat.errors import SamatError
from samat.export import FORMAT, FORMAT_VERSION, export_model, load_model, model_from_spec
from samat.interfaces import Task
from samat.recipe import recipe_from_dict
from samat.testing import FixtureTask, registered, sample_batch


@pytest.fixture(autouse=True)
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing in these tests may unpickle: ``torch.load`` and ``pickle.load(s)`` raise."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("unpickling")

    for target, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(target, name, refuse)
    with one_thread():
        yield


def train(tmp_path: Path, task: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
          **train: Any) -> tuple[Path, nn.Module, Task]:
    """Run a 1-epoch recipe on ``task`` into ``tmp_path/run``; the run directory and the trained
    model and task (as the run exported them)."""
    exported: dict[str, Any] = {}

    def spy(task: Task, name: str, model: nn.Module, directory: Path, trained: Any) -> Any:
        exported.update(model=model, task=task)
        return export_model(task, name, model, directory, trained)

    monkeypatch.setattr(run_module, "export_model", spy)
    recipe = recipe_from_dict({
        "task": task, "seed": 0, "device": "cpu", "output_dir": str(tmp_path / "run"),
        "train": {"epochs": 1, "batch_size": 8, "optimizer": {"name": "sgd", "lr": 0.05,
                                                              "momentum": 0.9}, **train},
        "eval": {"batch_size": 8, "attacks": []},
    })
    run_module.run("recipe.yaml", recipe=recipe)
    return tmp_path / "run", exported["model"], exported["task"]


def assert_same_outputs(loaded: nn.Module, trained: nn.Module, task: Task) -> None:
    x, _ = sample_batch(task, "eval", 4)
    trained.eval()
    with torch.no_grad():
        expected, got = trained(x), loaded(x)
    assert torch.equal(got, expected)


def test_a_run_exports_a_model_that_loads_bitwise_equal(
        tmp_path: Path, fixture_task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, trained, task = train(tmp_path, {"name": fixture_task, "n_train": 64, "n_test": 16},
                                   monkeypatch)
    spec = json.loads((run_dir / "model.json").read_text())
    assert (run_dir / "model.safetensors").is_file()
    assert spec["format"] == FORMAT and spec["format_version"] == FORMAT_VERSION
    assert spec["samat_version"] == samat.__version__ and spec["task"] == "fixture"
    assert spec["architecture"] == {"n_inputs": 8, "hidden": 32, "n_classes": 3,
                                    "batchnorm": True}
    assert spec["weights"]["format"] == "safetensors"
    assert spec["weights"]["path"] == "model.safetensors" and len(spec["weights"]["sha256"]) == 64
    assert spec["input_shape"] == [8] and spec["input_range"] == [0.0, 1.0]
    assert spec["trained"]["steps"] == 8 and spec["trained"]["weight_perturbation"] == {
        "name": "none"}
    for path in (run_dir, run_dir / "model.json", str(run_dir)):
        model = samat.load_model(path)
        assert not model.training and model.samat_info == spec
        assert_same_outputs(model, trained, task)


def test_model_from_spec_takes_a_dict_and_any_weights_file(
        tmp_path: Path, fixture_task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, trained, task = train(tmp_path, {"name": fixture_task, "n_train": 64, "n_test": 16},
                                   monkeypatch)
    spec = json.loads((run_dir / "model.json").read_text())
    elsewhere = tmp_path / "weights.safetensors"
    shutil.copy(run_dir / "model.safetensors", elsewhere)
    assert_same_outputs(samat.model_from_spec(spec, elsewhere), trained, task)
    initial = model_from_spec(spec)  # no weights: the architecture, freshly initialised
    assert not initial.training
    shapes = {k: v.shape for k, v in trained.state_dict().items()}
    assert {k: v.shape for k, v in initial.state_dict().items()} == shapes
    assert not torch.equal(initial.out.weight, trained.out.weight)
    assert samat.read_model_spec(run_dir)[0] == spec


def test_image_cifar_model_loads_without_its_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from image_fixtures import make_cifar10

    root = make_cifar10(tmp_path / "data")
    run_dir, trained, task = train(
        tmp_path, {"name": "image_classification", "dataset": "cifar10", "root": str(root),
                   "model": "small_cnn", "width": 4}, monkeypatch)
    x, _ = sample_batch(task, "eval", 4)
    shutil.rmtree(root)
    spec = json.loads((run_dir / "model.json").read_text())
    assert spec["architecture"]["model"] == "small_cnn" and spec["architecture"]["width"] == 4
    assert spec["classes"][:2] == ["airplane", "automobile"] and len(spec["classes"]) == 10
    assert spec["input_shape"] == [3, 32, 32]
    assert spec["normalization"]["mean"] == spec["architecture"]["mean"]
    model = load_model(run_dir)
    trained.eval()
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))


def test_image_digits_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, trained, task = train(
        tmp_path, {"name": "image_classification", "dataset": "digits", "model": "small_cnn",
                   "width": 4, "n_train": 64}, monkeypatch)
    model = load_model(run_dir)
    assert model.samat_info["classes"] == [str(d) for d in range(10)]
    assert model.samat_info["input_shape"] == [1, 16, 16]
    assert_same_outputs(model, trained, task)


def test_segmentation_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("segmentation_models_pytorch")
    run_dir, trained, task = train(
        tmp_path, {"name": "segmentation", "dataset": "shapes", "crop_size": 32, "max_train": 8,
                   "max_eval": 4}, monkeypatch)
    model = load_model(run_dir)
    assert model.samat_info["classes"] == list(task.class_names)
    assert model.samat_info["architecture"]["encoder"] == "mobilenet_v2"
    assert_same_outputs(model, trained, task)


def test_toy_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, trained, task = train(
        tmp_path, {"name": "toy_duality", "n": 4, "n_train": 64, "n_test": 16,
                   "theory_eps": [0.1]}, monkeypatch)
    model = load_model(run_dir)
    assert model.samat_info["architecture"] == {"n_features": 5}
    assert_same_outputs(model, trained, task)


def test_text_model_is_a_save_pretrained_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    from text_fixtures import write_data, write_model
    from transformers import AutoModelForSequenceClassification

    data = write_data(tmp_path / "data")
    run_dir, trained, task = train(
        tmp_path, {"name": "text_classification", "model": str(write_model(tmp_path / "hf")),
                   "dataset": "files", "train_file": str(data["train_csv"]),
                   "eval_file": str(data["eval_csv"]), "max_length": 16, "n_train": 16,
                   "n_eval": 8, "download": False}, monkeypatch)
    spec = json.loads((run_dir / "model.json").read_text())
    assert spec["weights"] == {"format": "transformers", "path": "model"}
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {
        p.name for p in (run_dir / "model").iterdir()}
    assert not (run_dir / "model.safetensors").exists()
    model = load_model(run_dir)
    assert_same_outputs(model, trained, task)
    x, _ = sample_batch(task, "eval", 4)
    hf = AutoModelForSequenceClassification.from_pretrained(run_dir / "model",
                                                            local_files_only=True).eval()
    with torch.no_grad():
        logits = hf(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
    assert torch.equal(logits, model(x))


# -- bad files: one-line errors naming the path ----------------------------------------------
@pytest.fixture
def exported(tmp_path: Path, fixture_task: str) -> Path:
    """A fixture-task model exported into ``tmp_path/m`` (untrained)."""
    task = FixtureTask(n_train=16, n_test=16)
    directory = tmp_path / "m"
    directory.mkdir()
    export_model(task, fixture_task, task.build_model(), directory)
    return directory


def one_line_error(path: Any, match: str) -> str:
    with pytest.raises(SamatError, match=match) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_corrupt_or_truncated_weights(exported: Path) -> None:
    weights = exported / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert str(weights) in one_line_error(exported, "corrupt")
    weights.write_bytes(bytes(data[: len(data) // 2]))
    assert str(weights) in one_line_error(exported, "corrupt")
    spec = json.loads((exported / "model.json").read_text())
    with pytest.raises(SamatError, match="unreadable") as info:  # no checksum to catch it
        model_from_spec(spec, weights)
    assert str(weights) in str(info.value) and "\n" not in str(info.value)
    weights.unlink()
    assert str(weights) in one_line_error(exported, "missing")


def test_weights_of_another_architecture(exported: Path) -> None:
    spec = json.loads((exported / "model.json").read_text())
    spec["architecture"]["hidden"] = 16
    with pytest.raises(SamatError, match="does not fit the architecture") as info:
        model_from_spec(spec, exported / "model.safetensors")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "unreadable"),
    ("[]", "not a samat model description"),
    ('{"format": "samat-model", "format_version": 99}', "newer than this samat reads"),
])
def test_malformed_model_json(exported: Path, content: str, match: str) -> None:
    (exported / "model.json").write_text(content)
    assert str(exported / "model.json") in one_line_error(exported, match)


@pytest.mark.parametrize(("change", "match"), [
    ({"task": "nope"}, "install the plugin"),
    ({"architecture": {"n_inputs": 8}}, "'architecture' does not build a model"),
    ({"architecture": None}, "'architecture' must be a mapping"),
    ({"weights": {"format": "safetensors", "path": "../elsewhere.safetensors"}},
     "inside the model's directory"),
])
def test_bad_model_json_fields(exported: Path, change: dict[str, Any], match: str) -> None:
    path = exported / "model.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    assert str(path) in one_line_error(path, match)


def test_missing_paths(tmp_path: Path) -> None:
    one_line_error(tmp_path / "absent", "not found")
    (tmp_path / "config.yaml").write_text("{}")
    assert "exported no model" in one_line_error(tmp_path, "model.json: missing")


# -- what is (not) exported ------------------------------------------------------------------
class _Tied(nn.Module):
    """An embedding and an output layer sharing one weight (safetensors refuses shared
    storage unless it is handled)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.embed = nn.Linear(n, n, bias=False)
        self.out = nn.Linear(n, n, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.embed(x)))


class _TiedTask(FixtureTask):
    def build_model(self) -> nn.Module:
        return _Tied(self.n_features)

    def model_spec(self) -> dict[str, Any]:
        return {"architecture": {"n": self.n_features}}


class _TiedPlugin:
    @samat.hookimpl
    def samat_register_tasks(self, register: samat.Register) -> None:
        register("tied", _TiedTask, "tied weights", model_builder=_Tied)


def test_shared_tensors_round_trip(tmp_path: Path) -> None:
    task = _TiedTask(n_train=16, n_test=16)
    model = task.build_model()
    with torch.no_grad():
        model.embed.weight.normal_()
    with registered(_TiedPlugin(), "tied_plugin"):
        export_model(task, "tied", model, tmp_path)
        loaded = load_model(tmp_path)
    assert loaded.out.weight is loaded.embed.weight
    assert torch.equal(loaded.embed.weight, model.embed.weight)


def test_non_finite_weights_and_tasks_without_spec_export_nothing(
        tmp_path: Path, fixture_task: str) -> None:
    task = FixtureTask(n_train=16, n_test=16)
    model = task.build_model()
    with torch.no_grad():
        model.out.weight[0, 0] = float("nan")
    assert export_model(task, fixture_task, model, tmp_path) is None
    monkeypatched = FixtureTask(n_train=16, n_test=16)
    monkeypatched.model_spec = lambda: None  # type: ignore[method-assign]
    assert export_model(monkeypatched, fixture_task, task.build_model(), tmp_path) is None
    assert not any(tmp_path.iterdir())


def test_a_task_registered_without_model_builder(tmp_path: Path) -> None:
    class Plugin:
        @samat.hookimpl
        def samat_register_tasks(self, register: samat.Register) -> None:
            register("plain", FixtureTask, "no builder")

    task = FixtureTask(n_train=16, n_test=16)
    with registered(Plugin(), "plain_plugin"):
        export_model(task, "plain", task.build_model(), tmp_path)
        one_line_error(tmp_path, "registers no model_builder")
