"""The local launcher: GPU pinning and concurrency; and the sweep commands every launcher shares
(``--point K``, ``--status``, ``--dry-run --json``, a sweep directory as the source)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from samat.errors import SamatError
from samat.sweep import load_sweep, make_launcher, point_states, run_sweep
from samat.sweep.grid import read_record

pytestmark = pytest.mark.usefixtures("fixture_task")

BASE = {
    "name": "local_sweep", "seed": 0, "device": "auto",
    "task": {"name": "fixture", "n_train": 128, "n_test": 64},
    "train": {"epochs": 1, "batch_size": 64},
    "eval": {"attacks": [{"name": "fgsm", "eps": 0.05}]},
}


def _recipe(tmp_path: Path, launcher: dict | None = None, seeds: int = 4) -> Path:
    data = {**BASE, "sweep": {"grid": {"seed": list(range(seeds))}}}
    if launcher is not None:
        data["sweep"]["launcher"] = launcher
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _max_overlap(records: list[dict]) -> int:
    """Most points running at the same moment, from their start/end times."""
    events = sorted([(r["started"], 1) for r in records] + [(r["ended"], -1) for r in records])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@pytest.mark.parametrize(("launcher", "groups", "at_once"), [
    ({"jobs": 4, "gpus": [0, 1], "gpus_per_job": 1}, {"0", "1"}, 2),
    ({"jobs": 2, "gpus": [0, 1, 2, 3], "gpus_per_job": 2}, {"0,1", "2,3"}, 2),
    ({"jobs": 3, "gpus": [5], "oversubscribe": True}, {"5"}, 3),
], ids=["one-gpu-each", "two-gpus-each", "oversubscribed"])
def test_each_job_gets_its_own_gpus_and_never_more_jobs_than_groups(
        tmp_path: Path, fixture_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        launcher: dict, groups: set[str], at_once: int) -> None:
    for key, value in fixture_env.items():
        monkeypatch.setenv(key, value)  # the children must know task fixture
    sweep = load_sweep(_recipe(tmp_path, launcher, seeds=4), build=False)
    root = tmp_path / "out"
    run_sweep(sweep, root)
    records = [read_record(root / p.name) for p in sweep.points]
    assert all(r["state"] == "done" and r["launcher"] == "local" for r in records)
    assert {r["cuda_visible_devices"] for r in records} == groups
    assert _max_overlap(records) <= at_once


def test_gpus_per_job_from_the_command_line(tmp_path: Path, run_cli, root: Path,
                                           fixture_env: dict[str, str]) -> None:
    recipe, out = _recipe(tmp_path, {"gpus": [0, 1, 2, 3]}, seeds=2), tmp_path / "out"
    done = run_cli("sweep", str(recipe), "--output", str(out), "--jobs", "2",
                   "--gpus-per-job", "2", cwd=root, env=fixture_env)
    assert done.returncode == 0, done.stderr
    assert {read_record(out / f"seed={s}")["cuda_visible_devices"] for s in (0, 1)} == {
        "0,1", "2,3"}
    slurm = run_cli("sweep", str(recipe), "--launcher", "slurm", "--gpus-per-job", "2",
                    "--dry-run", cwd=root, env=fixture_env)
    assert (slurm.returncode, slurm.stderr) == (
        2, "samat: error: --gpus-per-job: applies to the local launcher, not slurm (see "
        "docs/cluster.md for its sweep.launcher parameters)\n")


def test_without_gpus_points_are_not_pinned(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    sweep = load_sweep(_recipe(tmp_path, {"jobs": 2}), build=False)
    assert make_launcher(sweep, tmp_path).device_groups() == [None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,7")
    assert make_launcher(sweep, tmp_path).device_groups() == ["3", "7"]
    with pytest.raises(SamatError, match="sweep.launcher.gpus_per_job: 3 but only 2 GPU"):
        make_launcher(sweep, tmp_path, gpus_per_job=3).device_groups()
    with pytest.raises(SamatError, match="--jobs / sweep.launcher.jobs: must be >= 1"):
        make_launcher(sweep, tmp_path, jobs=0)
    with pytest.raises(SamatError, match="Unknown launcher 'slurmm'. Did you mean: slurm?"):
        make_launcher(sweep, tmp_path, "slurmm")


def test_point_status_and_dry_run_json(tmp_path: Path, run_cli, root: Path,
                                       fixture_env: dict[str, str]) -> None:
    recipe, out = _recipe(tmp_path, seeds=3), tmp_path / "out"
    dry = run_cli("sweep", str(recipe), "--output", str(out), "--dry-run", "--json",
                  cwd=root, env=fixture_env)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert [(p["index"], p["name"], p["status"]) for p in plan["points"]] == [
        (0, "seed=0", "pending"), (1, "seed=1", "pending"), (2, "seed=2", "pending")]
    assert plan["points"][1]["overrides"] == ["seed=1"]
    assert plan["points"][1]["run_dir"] == str(out / "seed=1") and not out.exists()

    one = run_cli("sweep", str(recipe), "--output", str(out), "--point", "1", cwd=root,
                  env=fixture_env)
    assert one.returncode == 0, one.stderr
    assert sorted(p.parent.name for p in out.glob("*/metrics.json")) == ["seed=1"]
    assert read_record(out / "seed=1")["launcher"] == "point"

    status = run_cli("sweep", str(out), "--status", "--json", cwd=root, env=fixture_env)
    assert status.returncode == 0, status.stderr
    states = {s["name"]: s["state"] for s in json.loads(status.stdout)}
    assert states == {"seed=0": "pending", "seed=1": "done", "seed=2": "pending"}

    rest = run_cli("sweep", str(out), cwd=root, env=fixture_env)  # the sweep directory itself
    assert rest.returncode == 0, rest.stderr
    assert "seed=1: finished, skipped" in rest.stderr and "3 (0, 1, 2)" in rest.stdout
    again = run_cli("sweep", str(out), "--point", "1", cwd=root, env=fixture_env)
    assert again.returncode == 0 and "finished, skipped" in again.stderr

    bad = run_cli("sweep", str(out), "--point", "3", cwd=root, env=fixture_env)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "samat: error: --point: 3 is not a point of this sweep (0 to 2; list them with "
        "--dry-run)")
    axes = run_cli("sweep", str(out), "seed=5,6", cwd=root, env=fixture_env)
    assert axes.returncode == 2 and "is a sweep directory: its points are fixed" in axes.stderr


def test_a_failed_point_is_recorded_and_reported(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, seeds=2)
    sweep = load_sweep(recipe, build=False)
    root = tmp_path / "out"
    (root / "seed=1").mkdir(parents=True)
    (root / "seed=1" / "config.yaml").write_text("not: [a recipe")  # a broken run directory
    (root / "seed=1" / "checkpoints").mkdir()
    (root / "seed=1" / "checkpoints" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(SamatError, match="sweep: 1 point\\(s\\) failed, first seed=1: "):
        run_sweep(sweep, root)
    states = point_states(sweep, root)
    assert states[0]["state"] == "done"
    assert states[1]["state"] == "failed" and "config.yaml" in states[1]["detail"]
