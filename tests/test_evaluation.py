"""Measures in the evaluation after training (``eval.measures``): what ``metrics.json`` records,
the run seed passed on, results kept across an interrupted evaluation, and bad measures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from report_fixtures import plugin_registered

from samat import Measure, hookimpl, runner
from samat.errors import SamatError
from samat.evaluation import STATE_DIR

pytestmark = pytest.mark.usefixtures("fixture_task")

CALLS: list[dict] = []


class WeightNorm(Measure):
    """The weights' l2 norm and the mean loss on the batches (a measure with a known answer)."""

    name = "weight_norm"
    key = "norm"

    def __init__(self, scale: float = 1.0, seed: int = 0, n_examples: int = 40,
                 batch_size: int | None = None, poison: bool = False) -> None:
        self.scale, self.seed, self.poison = scale, seed, poison
        self.n_examples, self.batch_size = n_examples, batch_size

    def measure(self, model, task, batches):
        CALLS.append({"training": model.training, "batches": [len(y) for _, y in batches]})
        with torch.no_grad():
            norm = torch.cat([p.flatten() for p in model.parameters()]).norm().item()
            loss = sum(task.loss(model(x), y).item() for x, y in batches) / len(batches)
        return {"norm": float("nan") if self.poison else self.scale * norm, "loss": loss,
                "details": {"parameters": sum(p.numel() for p in model.parameters())}}

    def describe(self):
        return {**super().describe(), "scale": self.scale, "seed": self.seed}


class MeasurePlugin:
    @hookimpl
    def samat_register_measures(self, register):
        register("weight_norm", WeightNorm, example={"n_examples": 8})


def recipe(tmp_path: Path, measures: list, **extra) -> Path:
    data = {"task": {"name": "fixture", "n_train": 64, "n_test": 96}, "seed": 3, "device": "cpu",
            "output_dir": str(tmp_path / "run"),
            "train": {"epochs": 1, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 0.1}},
            "eval": {"batch_size": 32, "attacks": [{"name": "fgsm", "eps": 0.1}],
                     "measures": measures}, **extra}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(autouse=True)
def measure_plugin():
    CALLS.clear()
    with plugin_registered(MeasurePlugin(), "measure_plugin"):
        yield


def test_measures_are_recorded_next_to_the_attacks(tmp_path: Path) -> None:
    metrics = runner.run(recipe(tmp_path, [{"name": "weight_norm", "scale": 2.0},
                                               {"name": "weight_norm", "label": "wn16",
                                                "n_examples": 20, "batch_size": 16}]))
    first, second = metrics["measures"]
    assert first["label"] == "weight_norm" and second["label"] == "wn16"
    assert first["measure"] == {"name": "weight_norm", "n_examples": 40, "batch_size": None,
                                "scale": 2.0, "seed": 3}  # the run seed is passed on
    assert first["key"] == "norm" and first["value"] == first["values"]["norm"]
    assert first["value"] == pytest.approx(2.0 * second["value"])
    assert first["n_examples"] == 40 and second["n_examples"] == 20
    assert first["details"] == {"parameters": second["details"]["parameters"]}
    assert first["seconds"] >= 0
    # the first n_examples in batches of the measure's batch_size (else eval.batch_size), in
    # eval mode
    assert CALLS == [{"training": False, "batches": [32, 8]},
                     {"training": False, "batches": [16, 4]}]
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["measures"] == metrics["measures"]
    with open(tmp_path / "run" / "metrics.csv", newline="") as stream:  # loggers see them too
        final = [row for row in csv.DictReader(stream) if row["event"] == "final"]
    assert float(final[-1]["final/measures/wn16/norm"]) == second["value"]
    assert not (tmp_path / "run" / STATE_DIR).exists()


def test_a_resumed_evaluation_keeps_finished_measures(tmp_path: Path) -> None:
    path = recipe(tmp_path, [{"name": "weight_norm"}, {"name": "weight_norm", "label": "bad",
                                                       "poison": True}])
    with pytest.raises(SamatError, match=r"eval.measures \(bad\): measure 'weight_norm' "
                                         r"returned norm=nan \(finite numbers only\)"):
        runner.run(path)
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert len(CALLS) == 2
    data = yaml.safe_load(path.read_text())
    data["eval"]["measures"][1]["poison"] = False
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SamatError, match="differs"):  # the recipe changed: not the same run
        runner.run(path, resume=True)
    data["eval"]["measures"][1]["poison"] = True
    path.write_text(yaml.safe_dump(data))
    CALLS.clear()
    with pytest.raises(SamatError, match="returned norm=nan"):
        runner.run(path, resume=True)
    assert len(CALLS) == 1  # the first measure was kept from the interrupted evaluation


@pytest.mark.parametrize(("measures", "message"), [
    ([{"name": "weight_norm"}, {"name": "weight_norm"}], "eval.measures: two measures share a "
                                                         "label"),
    ([{"name": "weight_nrom"}], "weight_norm"),
    ([{"name": "weight_norm", "sclae": 1}], "eval.measures.0.sclae"),
])
def test_bad_measures_are_refused_before_training(tmp_path: Path, measures: list,
                                                  message: str) -> None:
    with pytest.raises(SamatError, match=message):
        runner.run(recipe(tmp_path, measures))
    assert not (tmp_path / "run").exists()
    assert CALLS == []
