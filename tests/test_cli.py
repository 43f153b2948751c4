"""The command line end to end: run, validate, plugins, list, and every bad-input path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from samat.cli import main

pytestmark = pytest.mark.usefixtures("fixture_task")

GOOD = "task: {name: fixture, n_train: 64, n_test: 64}\ntrain: {epochs: 1}\n"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


RUN = """name: quick
seed: 3
task: {name: fixture, n_train: 512, n_test: 128}
train:
  epochs: 2
  batch_size: 64
  optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
  weight_perturbation: {name: sam, rho: 0.1}
eval:
  attacks:
    - {name: fgsm, eps: 0.1}
    - {name: pgd, norm: linf, eps: 0.1, alpha: 0.025, steps: 10, random_start: false}
"""


def test_run_end_to_end_then_resume_reports_again(tmp_path: Path, run_cli,
                                                  fixture_env: dict[str, str]) -> None:
    recipe = write(tmp_path, RUN)
    first = run_cli("run", recipe, cwd=tmp_path, env=fixture_env)
    assert first.returncode == 0, first.stderr
    assert "natural" in first.stdout and "average over attacks" in first.stdout
    (run_dir,) = (tmp_path / "runs" / "quick").iterdir()
    assert f"run directory: runs/quick/{run_dir.name}" in first.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and metrics["natural"]["n_examples"] == 128
    assert metrics["natural"]["accuracy"] > 60  # 3 classes: chance is 33
    pgd = metrics["attacks"][1]
    assert pgd["attack"] == {"name": "pgd", "norm": "linf", "eps": 0.1, "alpha": 0.025,
                             "steps": 10, "random_start": False, "restarts": 1,
                             "bounds": [0.0, 1.0], "mask": None}
    assert pgd["accuracy"] < metrics["natural"]["accuracy"] and pgd["n_examples"] == 128
    assert metrics["training"]["weight_perturbation"] == {"name": "sam", "rho": 0.1,
                                                          "adaptive": False}
    assert metrics["training"]["mean_step_time_s"] > 0
    assert metrics["versions"]["torch"] and "samat_fixture" in metrics["versions"]["plugins"]
    assert metrics["seed"] == 3 and metrics["task"]["params"]["seed"] == 3
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["train"]["epochs"] == 2 and config["task"]["n_train"] == 512
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 2
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert "natural accuracy" in (run_dir / "log.txt").read_text()

    again = run_cli("run", recipe, "--resume", cwd=tmp_path, env=fixture_env)
    assert again.returncode == 0, again.stderr
    assert "finished already" in again.stderr
    assert again.stdout == first.stdout  # the same table, nothing re-run
    assert len(list((tmp_path / "runs" / "quick").iterdir())) == 1


def test_run_output_names_the_run_directory(tmp_path: Path, run_cli,
                                            fixture_env: dict[str, str]) -> None:
    recipe = write(tmp_path, RUN)
    first = run_cli("run", recipe, "--output", "here/1: odd", "train.epochs=1", cwd=tmp_path,
                    env=fixture_env)
    assert first.returncode == 0, first.stderr
    assert "run directory: here/1: odd" in first.stdout  # a path, even if YAML would not say so
    assert (tmp_path / "here" / "1: odd" / "metrics.json").is_file()
    assert not (tmp_path / "runs").exists()
    again = run_cli("run", recipe, "train.epochs=1", "--resume", "--output", "here/1: odd",
                    cwd=tmp_path, env=fixture_env)
    assert again.returncode == 0 and "finished already" in again.stderr, again.stderr


def test_sweep_of_a_directory_that_is_no_sweep_says_what_it_is(tmp_path: Path,
                                                               capsys) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("task: toy_duality\n")
    for directory, what in ((tmp_path / "run", "a run directory (samat run's), not a sweep's"),
                            (tmp_path, "a directory without sweep.json")):
        assert main(["sweep", str(directory), "--status"]) == 2
        assert capsys.readouterr().err == (
            f"samat: error: {directory} is {what}: give a sweep recipe (.yaml) or the "
            "directory of a sweep (the one holding sweep.json)\n")


def test_validate_trains_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = write(tmp_path, GOOD + "eval: {attacks: [{name: fgsm, eps: 0.1}]}\n")
    assert main(["validate", recipe]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{recipe}: OK — task fixture (") and "1 attack(s): fgsm" in out
    assert not (tmp_path / "runs").exists()


def test_plugins_and_list(capsys) -> None:
    assert main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["core"]["error"] is None and listed["core"]["version"]
    assert listed["samat_fixture"]["hooks"] == ["samat_register_tasks"]
    assert main(["plugins"]) == 0
    assert "register_tasks" in capsys.readouterr().out
    assert main(["list", "attacks"]) == 0
    out = capsys.readouterr().out
    assert "pgd" in out and "Projected gradient descent" in out
    assert main(["list", "perturbations"]) == 0
    out = capsys.readouterr().out
    assert "sam" in out and "weight" in out and "input" in out
    assert main(["list", "tasks"]) == 0
    assert "\nfixture " in capsys.readouterr().out
    assert main(["list", "metrics"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["accuracy"][1:] == ["core", "accuracy", "higher"]


@pytest.mark.parametrize(
    ("recipe", "args", "message"),
    [
        (None, [], "recipe file not found: "),
        ("task: {name: toy\n", [], "r.yaml:2:1: malformed YAML"),
        (GOOD + "optimiser: {}\n", [], "Unknown key 'optimiser'."),
        (GOOD, ["train.weight_perturbation.rhoo=1"], "Unknown key 'train.weight_perturbation.rhoo"),
        (GOOD, ["task.name=fixtur"], "Unknown task 'fixtur'. Did you mean: fixture?"),
        (GOOD + "eval: {attacks: [{name: pgdd}]}\n", [],
         "Unknown attack 'pgdd'. Did you mean: pgd"),
        (GOOD + "eval: {attacks: [{name: pgdd}]}\n", [], "(at eval.attacks.0.name)"),
        (GOOD, ["train.weight_perturbation=sma"],
         "Unknown weight perturbation 'sma'. Did you mean: sam, esam?"),
        (GOOD, ["train.input_perturbation=pgdd"], "Unknown input perturbation 'pgdd'."),
        (GOOD, ["train.batch_size=many"], "train.batch_size: expected an integer, got 'many'"),
        (GOOD, ["train.epochs=-1"], "train.epochs: must be >= 1, got -1"),
        (GOOD, ["train.weight_perturbation=sam", "train.weight_perturbation.rho=0"],
         "train.weight_perturbation: rho must be > 0"),
        (GOOD, ["train.input_perturbation=pgd", "train.input_perturbation.eps=-1"],
         "train.input_perturbation: eps"),
        (GOOD, ["task.n_classes=1"], "task: n_classes must be an integer >= 2, got 1"),
        (GOOD, ["device=cuda:7"], None),  # only an error where CUDA is missing
        (GOOD, ["nokey"], "override 'nokey': expected key.path=value"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path: Path, monkeypatch, capsys, recipe: str | None, args: list[str], message: str | None
) -> None:
    import torch

    if message is None:
        if torch.cuda.is_available():
            pytest.skip("CUDA present")
        message = "device: 'cuda:7' requested but CUDA is not available"
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, recipe) if recipe is not None else str(tmp_path / "missing.yaml")
    assert main(["run", path, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("samat: error: "), err
    assert message in err, err
    assert not (tmp_path / "runs").exists()


def test_resume_with_no_run_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", write(tmp_path, GOOD), "--resume"]) == 2
    assert "--resume: no run to resume under runs/r/" in capsys.readouterr().err


def test_errors_in_a_real_process_have_no_traceback(tmp_path: Path, run_cli,
                                                    fixture_env: dict[str, str]) -> None:
    proc = run_cli("run", write(tmp_path, GOOD + "bogus: 1\n"), cwd=tmp_path, env=fixture_env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "samat: error: Unknown key 'bogus'. Valid keys here: task, name, description, seed, "
        "device, output_dir, train, eval, logging"
    ]
    bad_args = run_cli("frobnicate", cwd=tmp_path)
    assert bad_args.returncode == 2 and "Traceback" not in bad_args.stderr


@pytest.mark.parametrize(
    ("argv", "key", "expected"),
    [
        (["run", "r.yaml", "--resume", "train.epochs=5"], "overrides", ["train.epochs=5"]),
        (["run", "r.yaml", "seed=1", "--nproc", "2", "train.epochs=5"], "overrides",
         ["seed=1", "train.epochs=5"]),
        (["run", "r.yaml", "--output", "d", "seed=1"], "overrides", ["seed=1"]),
        (["validate", "r.yaml", "seed=1"], "overrides", ["seed=1"]),
        (["sweep", "r.yaml", "--launcher", "slurm", "seed=0,1"], "axes", ["seed=0,1"]),
        (["eval", "src", "--resume", "r.yaml", "seed=1"], "rest", ["r.yaml", "seed=1"]),
        (["report", "a", "--format", "csv", "b"], "paths", ["a", "b"]),
    ],
)
def test_overrides_and_paths_may_follow_flags(argv: list[str], key: str,
                                              expected: list[str]) -> None:
    from samat.cli import _parser

    assert getattr(_parser().parse_args(argv), key) == expected


def test_an_unknown_flag_after_overrides_is_still_one_line_exit_2(capsys) -> None:
    assert main(["validate", "r.yaml", "seed=1", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --bogus" in err


@pytest.mark.parametrize("argv", [["list", "attacks"], ["plugins", "--json"]])
def test_output_into_a_closed_pipe_ends_quietly(argv: list[str], fixture_env) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "samat", *argv], env=fixture_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head` gone before samat writes a byte
    assert proc.wait(timeout=120) == 141
    assert proc.stderr.read() == b""


def test_home_is_expanded_in_recipe_paths_and_values(tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    assert main(["validate", "~/r.yaml"]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path}/r.yaml: OK")
    assert main(["run", "~/r.yaml", "output_dir=~/out"]) == 0
    assert (tmp_path / "out" / "metrics.json").is_file() and not (tmp_path / "~").exists()
    assert main(["report", "~/out", "--format=csv"]) == 0
    assert "fixture" in capsys.readouterr().out


def test_every_command_help_shows_examples(capsys) -> None:
    from samat.cli import COMMANDS

    for command in COMMANDS:
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "\nexamples:\n  samat " + command in out, command
