"""samat.report.runs: finished run directories, their perturbations and task, sweep axes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixtures import AT, CIFAR10, FGSM, make_run

from samat.errors import SamatError
from samat.report import Run, collect_runs, sweep_axes, write_report


def test_unfinished_runs_are_skipped_and_errors(tmp_path: Path) -> None:
    make_run(tmp_path / "done", natural=90, attacks={})
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.yaml").write_text("seed: 0\n")
    assert [r.path.name for r in collect_runs([tmp_path])] == ["done"]
    with pytest.raises(SamatError, match="does not exist"):
        collect_runs([tmp_path / "nope"])
    with pytest.raises(SamatError, match="no finished run"):
        write_report([tmp_path / "unfinished"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    with pytest.raises(SamatError, match="cannot read"):
        collect_runs([tmp_path / "bad"])


def test_perturbations_of_a_run(tmp_path: Path) -> None:
    (run,) = collect_runs([make_run(tmp_path / "at", natural=80, attacks={}, inp=AT)])
    assert run.input_perturbation == AT and run.weight_perturbation == {"name": "none"}
    run.input_perturbation["eps"] = 1.0  # a copy: the config is untouched
    assert run.config["train"]["input_perturbation"]["eps"] == 8 / 255
    zero = Run(Path(), {}, {"train": {"weight_perturbation": {"name": "sam", "rho": 0.0}}})
    assert zero.weight_perturbation == {"name": "none"}  # a zero radius is no perturbation
    assert Run(Path(), {}, {}).input_perturbation == {"name": "none"}


def test_task_leaves_out_the_seed_and_the_declared_environment(tmp_path: Path) -> None:
    task = {**CIFAR10, "download": True, "seed": 3}
    (run,) = collect_runs([make_run(tmp_path / "a", natural=90, attacks={}, task=task)])
    assert run.task == {"name": "image_classification", "dataset": "cifar10",
                        "model": "preactresnet18"}  # image_classification declares root, download
    unknown = Run(Path(), {}, {"task": {"name": "no_such_task", "root": "data", "seed": 1}})
    assert unknown.task == {"name": "no_such_task", "root": "data"}  # nothing declared
    assert Run(Path(), {"task": {"name": "x"}}, {}).task == {"name": "x"}  # no config.yaml


def test_numeric_sweep_axes(tmp_path: Path) -> None:
    assert sweep_axes([tmp_path]) == []  # not a sweep directory
    grid = {"seed": [0, 1], "train.optimizer.lr": [0.1, 0.05],
            "train.input_perturbation.eps": ["1/255", "2/255"], "task.model": ["a", "b"]}
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": grid}))
    assert sweep_axes([tmp_path]) == ["train.optimizer.lr", "train.input_perturbation.eps"]
    (tmp_path / "sweep.json").write_text("{broken")
    with pytest.raises(SamatError, match=r"sweep.json: unreadable"):
        sweep_axes([tmp_path])


def test_runs_below_a_path_are_found_once(tmp_path: Path) -> None:
    make_run(tmp_path / "a" / "s0", natural=90, attacks={"FGSM": (FGSM, 50)})
    make_run(tmp_path / "b", natural=91, attacks={})
    runs = collect_runs([tmp_path, tmp_path / "a", tmp_path / "a" / "s0"])
    assert sorted(r.path.name for r in runs) == ["b", "s0"]


@pytest.mark.parametrize(("measures", "problem"), [
    ({"label": "x"}, "'measures' is not a list"),
    ([{"label": "x", "measure": {}}], "'measures' has an entry without 'label', 'measure' or "
                                      "'key'"),
    ([{"label": "x", "measure": {}, "key": "k", "value": float("nan")}],
     "measure 'x': 'value' is not a finite number"),
    ([{"label": "x", "measure": {}, "key": "k", "value": 1.0, "values": {"k": float("inf")}}],
     "measure 'x': 'values' is not a mapping of finite numbers"),
])
def test_malformed_measures_are_refused(tmp_path: Path, measures: object, problem: str) -> None:
    run = make_run(tmp_path / "a", natural=90, attacks={})
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "measures": measures}))
    with pytest.raises(SamatError) as error:
        collect_runs([run])
    assert str(error.value) == (f"report: {run / 'metrics.json'} is not a samat metrics file "
                                f"({problem}); delete that run directory or run it again")
