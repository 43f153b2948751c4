"""samat.sweep: grid/cases from recipes and the command line, resumable execution, summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from run_fixtures import without_wall_clock

from samat import results
from samat.errors import SamatError
from samat.sweep import MANIFEST, load_sweep, point_recipe, run_sweep, split_arguments

pytestmark = pytest.mark.usefixtures("fixture_task")

BASE = {
    "name": "fixture_sweep",
    "seed": 0,
    "device": "cpu",
    "task": {"name": "fixture", "n_train": 256, "n_test": 256},
    "train": {"epochs": 2, "batch_size": 64, "optimizer": {"name": "sgd", "lr": 0.1}},
    "eval": {"batch_size": 256,
             "attacks": [{"name": "fgsm", "eps": 0.1, "label": "fgsm"}]},
}


def _recipe(tmp_path: Path, sweep: dict | None = None, **changes) -> Path:
    data = {**BASE, **changes}
    if sweep is not None:
        data["sweep"] = sweep
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_command_line_axes_and_overrides() -> None:
    axes, overrides = split_arguments(
        ["seed=0,1,2", "train.input_perturbation.eps=1/255,8/255", "train.epochs=3",
         "eval.attacks=[{name: fgsm, eps: 0.1}]"])
    assert axes == {"seed": [0, 1, 2], "train.input_perturbation.eps": ["1/255", "8/255"]}
    assert overrides == ["train.epochs=3", "eval.attacks=[{name: fgsm, eps: 0.1}]"]
    with pytest.raises(SamatError, match="empty value"):
        split_arguments(["seed=0,,1"])


def test_points_from_grid_and_cases(tmp_path: Path) -> None:
    path = _recipe(tmp_path, {
        "grid": {"seed": [0, 1]},
        "cases": {"st": {}, "sam": {"train.weight_perturbation": {"name": "sam", "rho": 0.1}}},
    })
    sweep = load_sweep(path, ["train.batch_size=32"])
    assert [p.name for p in sweep.points] == ["st/seed=0", "st/seed=1", "sam/seed=0",
                                              "sam/seed=1"]
    assert sweep.points[2].overrides == ["train.weight_perturbation={name: sam, rho: 0.1}",
                                         "seed=0"]
    assert sweep.overrides == ["train.batch_size=32"]
    cli = load_sweep(path, ["train.optimizer.lr=0.05,0.2"])
    assert len(cli.points) == 8 and "sam/seed=1_lr=0.2" in [p.name for p in cli.points]
    with pytest.raises(SamatError, match="sweep point st/seed=0_rho=0.05: Unknown key "
                       "'train.weight_perturbation.rho'"):  # the st case has no rho
        load_sweep(path, ["train.weight_perturbation.rho=0.05,0.2"])
    fractions = load_sweep(_recipe(tmp_path), ["train.input_perturbation={name: pgd, eps: 0.1}",
                                               "train.input_perturbation.eps=1/255,8/255"])
    assert [p.name for p in fractions.points] == ["eps=1_255", "eps=8_255"]


@pytest.mark.parametrize(("sweep", "args", "message"), [
    (None, [], "nothing to sweep"),
    ({"grid": {"seed": []}}, [], "sweep.grid.seed: expected a non-empty list"),
    ({"grid": {"output_dir": ["a", "b"]}}, [], "a sweep sets output_dir itself"),
    ({"grids": {"seed": [0]}}, [], "Unknown key 'sweep.grids'"),
    ({"cases": {"a/b": {}}}, [], "must be a plain directory name"),
    ({"cases": {"x": {"train.weight_perturbation.rhoo": 1}}}, [], "sweep point x: "),
    ({"grid": {"train.epochs": [1, -1]}}, [], "sweep point epochs=-1: train.epochs: must be"),
])
def test_bad_sweeps_fail_before_anything_runs(tmp_path: Path, sweep, args, message) -> None:
    with pytest.raises(SamatError, match=message):
        load_sweep(_recipe(tmp_path, sweep), args)


def test_run_skip_and_resume(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _recipe(tmp_path, {"grid": {"seed": [0, 1]}})
    root = tmp_path / "out"
    sweep = load_sweep(path)
    points = run_sweep(sweep, root)
    assert [p["status"] for p in points] == ["done", "done"]
    first = json.loads((root / "seed=0" / results.METRICS).read_text())
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["grid"] == {"seed": [0, 1]} and manifest["points"][0]["accuracy"] == \
        first["natural"]["accuracy"]
    summary = (root / "summary.md").read_text()
    assert "| SGD |" in summary and "2 (0, 1)" in summary
    assert (root / "summary.csv").is_file()

    # an interrupted point: metrics gone, checkpoint kept -> resumed, same result
    stamp = (root / "seed=1" / results.METRICS).stat().st_mtime_ns
    (root / "seed=0" / results.METRICS).unlink()
    caplog.set_level(logging.INFO, logger="samat")
    run_sweep(load_sweep(path), root)
    assert "[2/2] seed=1: finished, skipped" in caplog.text
    assert "[1/2] seed=0: resuming" in caplog.text
    assert (root / "seed=1" / results.METRICS).stat().st_mtime_ns == stamp
    again = json.loads((root / "seed=0" / results.METRICS).read_text())
    assert again["natural"] == first["natural"] and again["attacks"][0]["accuracy"] == \
        first["attacks"][0]["accuracy"]

    # a point that crashed before its first checkpoint starts over
    (root / "seed=0" / results.METRICS).unlink()
    (root / "seed=0" / results.CHECKPOINT).unlink()
    run_sweep(load_sweep(path), root)
    assert json.loads((root / "seed=0" / results.METRICS).read_text())["natural"] == \
        first["natural"]


def test_a_different_sweep_in_the_same_directory_is_refused(tmp_path: Path) -> None:
    path = _recipe(tmp_path, {"grid": {"seed": [0]}}, train={**BASE["train"], "epochs": 1})
    run_sweep(load_sweep(path), tmp_path / "out")
    with pytest.raises(SamatError, match="holds a different sweep .*grid"):
        run_sweep(load_sweep(path, ["seed=0,1"]), tmp_path / "out")


def test_cli_sweep_in_parallel_and_dry_run(tmp_path: Path, run_cli, root: Path,
                                           fixture_env: dict[str, str]) -> None:
    path = _recipe(tmp_path, train={**BASE["train"], "epochs": 1})
    out = tmp_path / "out"
    dry = run_cli("sweep", str(path), "seed=0,1", "--output", str(out), "--dry-run", cwd=root,
                  env=fixture_env)
    assert dry.returncode == 0 and "seed=1  pending" in dry.stdout and not out.exists()
    done = run_cli("sweep", str(path), "seed=0,1", "--output", str(out), "--jobs", "2",
                   cwd=root, env=fixture_env)
    assert done.returncode == 0, done.stderr
    assert "\nSGD " in done.stdout and "2 (0, 1)" in done.stdout
    for seed in (0, 1):
        assert (out / f"seed={seed}" / results.METRICS).is_file()
    dry = run_cli("sweep", str(path), "seed=0,1", "--output", str(out), "--dry-run", cwd=root,
                  env=fixture_env)
    assert "seed=0  done" in dry.stdout
    bad = run_cli("sweep", str(path), "seed=0,1", "train.epochz=2", cwd=root, env=fixture_env)
    assert bad.returncode == 2 and "Unknown key 'train.epochz'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_samat_run_uses_the_base_point(tmp_path: Path, run_cli, root: Path,
                                      fixture_env: dict[str, str]) -> None:
    path = _recipe(tmp_path, {"grid": {"seed": [0, 1]}}, train={**BASE["train"], "epochs": 1},
                   output_dir=str(tmp_path / "single"))
    done = run_cli("run", str(path), cwd=root, env=fixture_env)
    assert done.returncode == 0, done.stderr
    assert "declares a sweep" in done.stderr
    assert (tmp_path / "single" / results.METRICS).is_file()


@pytest.mark.parametrize("n_sweeps", [2, 3])
def test_concurrent_sweeps_train_every_point_exactly_once(
        tmp_path: Path, root: Path, fixture_env: dict[str, str], n_sweeps: int) -> None:
    import subprocess
    import sys

    path = _recipe(tmp_path, {"grid": {"seed": [0, 1, 2], "train.optimizer.lr": [0.1, 0.05]}},
                   train={**BASE["train"], "epochs": 6})
    alone = tmp_path / "alone"
    run_sweep(load_sweep(path), alone)
    shared = tmp_path / "shared"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "samat", "sweep", str(path), "--output", str(shared),
         "--jobs", str(1 + i % 2)], cwd=root, env=fixture_env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(n_sweeps)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    points = sorted(p.parent.relative_to(shared) for p in shared.rglob("metrics.json"))
    assert len(points) == 6
    for point in points:
        log = (shared / point / "log.txt").read_text()
        assert log.count(" run ") == 1 and "resumed" not in log, f"{point} trained twice"
        assert not (shared / point / ".samat.lock").exists()
        ours = json.loads((shared / point / "metrics.json").read_text())
        reference = json.loads((alone / point / "metrics.json").read_text())
        for data in (ours, reference):
            data.pop("run_dir"), data["recipe"].pop("path", None)
        assert without_wall_clock(ours) == without_wall_clock(reference)
    # every sweep waited for the others and printed the whole table
    for out, _ in outputs:
        assert out.count("SGD") == 2 and "3 (0, 1, 2)" in out


def test_a_sweep_validates_every_point_by_building_it_before_any_trains(
        tmp_path: Path, root: Path, run_cli, fixture_env: dict[str, str]) -> None:
    path = _recipe(tmp_path)
    out = tmp_path / "out"
    for extra in ([], ["--dry-run"]):
        proc = run_cli("sweep", str(path), "train.weight_perturbation={name: sam}",
                       "train.weight_perturbation.rho=0.1,-1", "--output", str(out), *extra,
                       cwd=root, env=fixture_env)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            "samat: error: sweep point rho=-1: train.weight_perturbation: rho must be > 0, "
            "got -1"]
        assert not out.exists()


def test_a_points_error_names_the_fragment_that_set_the_key(tmp_path: Path) -> None:
    (tmp_path / "sam.yaml").write_text("train:\n  weight_perturbation: {name: sam, rho: -1}\n")
    path = _recipe(tmp_path, {"grid": {"seed": [0, 1]}}, extends="sam.yaml")
    with pytest.raises(SamatError) as info:
        load_sweep(path, [])
    assert str(info.value) == (f"sweep point seed=0: {tmp_path / 'sam.yaml'}:2: "
                               "train.weight_perturbation: rho must be > 0, got -1")


def test_a_case_extends_recipes_and_fragments(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "adam.yaml").write_text(
        "train:\n  optimizer: {name: adam, lr: 1.0e-3}\n")
    (tmp_path / "sam.yaml").write_text(  # a whole recipe: only what differs from the base counts
        "name: sam\nextends: sweep.yaml\ntrain:\n  weight_perturbation: {name: sam, rho: 0.1}\n")
    (tmp_path / "shared" / "sweep.yaml").write_text(  # cases written here: paths from here
        "sweep:\n  cases:\n    sgd: {}\n    adam: {extends: adam.yaml}\n"
        "    sam: {extends: [../sam.yaml, adam.yaml], train.weight_perturbation.rho: 0.2}\n")
    path = _recipe(tmp_path, extends="shared/sweep.yaml")
    sweep = load_sweep(path, [])
    assert sweep.cases == {
        "sgd": {},
        "adam": {"train.optimizer": {"name": "adam", "lr": 1e-3}},  # another name: whole
        "sam": {"train.optimizer": {"name": "adam", "lr": 1e-3},
                "train.weight_perturbation": {"name": "sam", "rho": 0.1},
                "train.weight_perturbation.rho": 0.2}}  # the case's own key last
    recipes = {p.case: point_recipe(sweep, p, tmp_path) for p in sweep.points}
    assert recipes["adam"].train.optimizer.params == {"lr": 1e-3}  # no stray momentum
    assert recipes["sam"].train.weight_perturbation.params == {"rho": 0.2}
    assert recipes["sgd"].train.optimizer.name == "sgd"
    bad = path.read_text().replace("shared/sweep.yaml", "bad.yaml")
    (tmp_path / "bad.yaml").write_text("sweep:\n  cases:\n    a: {}\n    b: {extends: nope.yaml}\n")
    path.write_text(bad)
    with pytest.raises(SamatError, match=rf"^{tmp_path / 'bad.yaml'}:4: extends: 'nope.yaml' "
                                         "not found"):
        load_sweep(path, [])


def test_a_diverged_point_is_reported_not_failed_and_not_retried(tmp_path: Path) -> None:
    from nonfinite_fixtures import poison_task, recipe

    data = recipe(tmp_path)
    data.pop("output_dir")
    data["task"]["poison"] = 3
    data["sweep"] = {"grid": {"train.on_nonfinite": ["stop", "skip"]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    with poison_task():
        points = run_sweep(load_sweep(path), tmp_path / "out")
        assert [p["status"] for p in points] == ["diverged", "done"]
        again = run_sweep(load_sweep(path), tmp_path / "out")  # nothing re-runs
        assert [p["status"] for p in again] == ["diverged", "done"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "0 + 1 diverged (0)" in summary and "diverged: runs that stopped" in summary
