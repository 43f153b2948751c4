"""The slurm launcher on a real single-node Slurm (``scripts/slurm_up.sh``; ``make test`` brings
it up): sweeps go through sbatch as one job array, requeued points resume from their
checkpoints and end with the uninterrupted metrics. Without that cluster the Slurm tests skip
and say why; the plan, the option checks and the element's signal handling run everywhere."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from run_fixtures import without_wall_clock

from samat import results
from samat.errors import SamatError
from samat.sweep import load_sweep, make_launcher
from samat.sweep.grid import read_record, write_manifest

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = Path(os.environ.get("SAMAT_SLURM_DIR") or ROOT / ".slurm")
CLUSTER = "samat-test"
SLURM_LINES: list[str] = []
"""squeue / scontrol output seen by the tests (printed with -s, for the record)."""

SHORT = {  # a few milliseconds of training per point
    "name": "fixture_slurm", "seed": 0, "device": "cpu",
    "task": {"name": "fixture", "n_train": 256, "n_test": 128},
    "train": {"epochs": 3, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 0.1},
              "checkpoint_every": 4},
    "eval": {"batch_size": 128, "attacks": [{"name": "fgsm", "eps": 0.1, "label": "fgsm"}]},
}
LONG = {  # about 10 s of training per point, a checkpoint every 50 of its 7680 steps
    **SHORT, "name": "fixture_slurm_long",
    "task": {"name": "fixture", "n_train": 2048, "n_test": 128, "hidden": 64},
    "train": {"epochs": 60, "batch_size": 16, "optimizer": {"name": "sgd", "lr": 0.05},
              "checkpoint_every": 50},
}


def _slurm_unavailable() -> str | None:
    """Why the Slurm tests cannot run here, or None."""
    brought_up = SLURM_DIR / "unavailable"
    hint = (f"scripts/slurm_up.sh could not start one: {brought_up.read_text().strip()}"
            if brought_up.is_file() else "as root, scripts/slurm_up.sh starts one")
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=10)
    except FileNotFoundError:
        return f"no Slurm here (sinfo not found); {hint}"
    except subprocess.TimeoutExpired:
        return f"no Slurm here (sinfo did not answer within 10 s); {hint}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"no Slurm here ({last}); {hint}"
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                            timeout=10).stdout
    name = re.search(r"ClusterName\s*=\s*(\S+)", config)
    if not name or name.group(1) != CLUSTER:
        return (f"Slurm answers but is cluster {name.group(1) if name else '?'}, not the "
                f"loopback test cluster '{CLUSTER}' of scripts/slurm_up.sh (these tests submit "
                "jobs that use this machine's temporary directories)")
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    """Skip unless the test cluster of scripts/slurm_up.sh answers."""
    reason = _slurm_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def env(fixture_env: dict[str, str]) -> dict[str, str]:
    """The environment of the samat processes and so of their Slurm jobs (sbatch exports it):
    task fixture known, dead processes' locks stale after 2 s."""
    return {**fixture_env, "SAMAT_LOCK_HEARTBEAT_S": "0.5", "SAMAT_LOCK_STALE_AFTER_S": "2"}


def _recipe(tmp_path: Path, base: dict[str, Any], seeds: list[int]) -> Path:
    path = tmp_path / f"{base['name']}.yaml"
    path.write_text(yaml.safe_dump({**base, "sweep": {"grid": {"seed": seeds}}},
                                   sort_keys=False))
    return path


def _samat(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "samat", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 150) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"samat did not finish within {timeout:g} s:\n{out}\n{err}")
    return proc.returncode, out, err


def _run(*cmd: str) -> str:
    """A Slurm command's output, kept for the record."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    out = done.stdout
    SLURM_LINES.append(f"$ {' '.join(cmd)}\n{(out + done.stderr).rstrip()}")
    print(SLURM_LINES[-1])
    return out


def _job_states(shown: str) -> dict[str, str]:
    """``scontrol show job`` output: array element (``<array>_<task>``) -> JobState."""
    states = {}
    for block in shown.split("\n\n"):
        fields = dict(re.findall(r"(\w+)=(\S*)", block))
        if "ArrayTaskId" in fields:
            states[f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"] = fields["JobState"]
    return states


def _metrics(root: Path, name: str) -> dict[str, Any]:
    return without_wall_clock(json.loads((root / name / results.METRICS).read_text()))


def _wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


# ---- everywhere: the plan, the option checks, the element's signal handling --------------

def test_dry_run_prints_the_array_and_its_cost(tmp_path: Path, env: dict[str, str]) -> None:
    recipe = _recipe(tmp_path, SHORT, [0, 1, 2])
    args = ["sweep", str(recipe), "sweep.launcher.partition=gpu", "sweep.launcher.time_min=720",
            "sweep.launcher.cpus_per_point=8", "sweep.launcher.mem_gb=32",
            "sweep.launcher.array_parallelism=2", "sweep.launcher.max_requeues=0",
            "sweep.launcher.setup=[module load cuda]", "--launcher", "slurm",
            "--output", str(tmp_path / "out"), "--dry-run"]
    done = subprocess.run([sys.executable, "-m", "samat", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("slurm: 3 point(s) as one array on partition gpu (at most 2 at once), 1 GPU, "
            "8 CPUs, 32 GB, time limit 12 h each: at most 36 GPU-hours\n") in done.stdout
    assert ("sbatch --array=0-2%2 --job-name=samat-fixture_slurm --partition=gpu "
            "--gpus-per-node=1 --cpus-per-task=8 --mem=32GB --time=720 --signal=USR2@120 "
            "--requeue\nsetup: module load cuda\n") in done.stdout
    assert not (tmp_path / "out").exists()
    args = [a for a in args if a != "sweep.launcher.max_requeues=0"]
    as_json = subprocess.run([sys.executable, "-m", "samat", *args, "--json"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    plan = json.loads(as_json.stdout)
    assert plan["launcher"] == "slurm" and [p["index"] for p in plan["points"]] == [0, 1, 2]
    assert plan["plan"][0].endswith("at most 36 GPU-hours (144 if every point used its 3 "
                                    "time-limit requeue(s))")


@pytest.mark.parametrize(("setting", "message"), [
    ("sweep.launcher.gpus_per_point=-1", "sweep.launcher.gpus_per_point: must be >= 0, got -1"),
    ("sweep.launcher.gpu=1", "Unknown key 'sweep.launcher.gpu'"),
    ("sweep.launcher.time_min=1", "sweep.launcher.signal_delay_s: 120 s is not shorter than "
                                  "the time limit (time_min=1: 60 s)"),
    ("sweep.launcher.mem_gb=0", "sweep.launcher.mem_gb: must be > 0, got 0"),
    ("sweep.launcher.slurm_additional={array: 0-3}", "sweep.launcher.slurm_additional.array: "
                                                     "set by the launcher"),
    ("sweep.launcher.slurm_additional={cpus_per_task: 4}", "use sweep.launcher.cpus_per_point"),
    ("sweep.launcher.slurm_additional=[a]", "sweep.launcher.slurm_additional: expected a map"),
    ("sweep.launcher.partition=a b", "sweep.launcher.partition: expected a partition name"),
    ("sweep.launcher.setup=module load cuda", "sweep.launcher.setup: expected a list"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, fixture_task: str, setting: str,
                                         message: str) -> None:
    sweep = load_sweep(_recipe(tmp_path, SHORT, [0, 1]), [setting], build=False)
    with pytest.raises(SamatError, match=re.escape(message)) as error:
        make_launcher(sweep, tmp_path / "out", "slurm")
    assert "\n" not in str(error.value)


def test_a_bad_option_on_the_command_line_exits_2(tmp_path: Path, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "samat", "sweep",
                           str(_recipe(tmp_path, SHORT, [0, 1])), "sweep.launcher.max_requeues=-1",
                           "--launcher", "slurm", "--dry-run"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (
        2, "samat: error: sweep.launcher.max_requeues: must be >= 0, got -1\n")


def test_without_submitit_the_launch_says_what_to_install(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    code = ("import sys; sys.modules['submitit'] = None; from samat.cli import main; "
            f"sys.exit(main(['sweep', {str(_recipe(tmp_path, SHORT, [0, 1]))!r}, "
            f"'--launcher', 'slurm', '--output', {str(tmp_path / 'out')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "samat: error: the slurm launcher needs submitit: pip install 'samat[slurm]'")


def test_element_stops_at_a_step_on_the_time_limit_signal(tmp_path: Path, env: dict[str, str],
                                                          fixture_task: str) -> None:
    """An array element outside Slurm, sent the time-limit warning (USR2) mid-training:
    checkpoint, stop, and — no requeue left (max_requeues=0) — recorded failed, resumable."""
    root = tmp_path / "out"
    root.mkdir()
    write_manifest(load_sweep(_recipe(tmp_path, LONG, [0]), build=False), root)
    code = ("from samat.sweep.slurm_launcher import run_element; "
            f"run_element({str(root)!r}, 0, 0)")
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    point = root / "seed=0"
    _wait_until(lambda: (point / results.CHECKPOINT).is_file() or proc.poll() is not None,
                60, "the first checkpoint")
    proc.send_signal(signal.SIGUSR2)
    code_, err = proc.wait(timeout=60), proc.stderr.read()
    assert code_ == 4, err  # STOPPED_EXIT, as samat sweep --point
    assert "stopped (time limit) at epoch" in err
    record = read_record(point)
    assert record["state"] == "failed" and record["error"].startswith(
        "reached its time limit 1 time(s) (sweep.launcher.max_requeues=0); re-run the sweep "
        "to continue from its checkpoint")
    assert (point / results.CHECKPOINT).is_file() and not (point / results.METRICS).exists()


# ---- on the test cluster -----------------------------------------------------------------

def test_sweep_through_sbatch_equals_the_local_sweep(slurm: None, tmp_path: Path,
                                                     env: dict[str, str]) -> None:
    recipe = _recipe(tmp_path, SHORT, [0, 1, 2, 3])
    names = [f"seed={s}" for s in range(4)]
    on_slurm = _samat("sweep", str(recipe), "sweep.launcher.gpus_per_point=0",
                      "sweep.launcher.time_min=5", "--launcher", "slurm", "--output",
                      str(tmp_path / "slurm"), "--wait", env=env, cwd=tmp_path)
    local = _samat("sweep", str(recipe), "--output", str(tmp_path / "local"), env=env,
                   cwd=tmp_path)
    _wait_until(lambda: all(read_record(tmp_path / "slurm" / n).get("job_id") for n in names),
                60, "the job array's launch records")
    array = read_record(tmp_path / "slurm" / names[0])["job_id"].split("_")[0]
    _run("squeue", "-r", "-j", array, "-o", "%.10i %.9P %.22j %.8T %.6M %R")
    code, out, err = _finish(on_slurm)
    assert code == 0, err
    assert "submitted 4 point(s) to Slurm as job array" in err and "SGD" in out
    assert _finish(local)[0] == 0
    shown = _job_states(_run("scontrol", "show", "job", array))
    for i, name in enumerate(names):
        record = read_record(tmp_path / "slurm" / name)
        assert record["launcher"] == "slurm" and record["state"] == "done"
        assert record["job_id"] == f"{array}_{i}" and record["host"] == socket.gethostname()
        assert shown[f"{array}_{i}"] == "COMPLETED"
        assert (tmp_path / "slurm" / ".submitit" / f"{array}_{i}").is_dir()
        assert _metrics(tmp_path / "slurm", name) == _metrics(tmp_path / "local", name)
    again = _samat("sweep", str(recipe), "sweep.launcher.gpus_per_point=0", "--launcher",
                   "slurm", "--output", str(tmp_path / "slurm"), env=env, cwd=tmp_path)
    code, out, err = _finish(again)
    assert code == 0 and "submitted" not in err, err
    assert out.startswith("nothing to submit: every point is done or diverged")


def test_requeued_points_resume_and_end_as_uninterrupted(slurm: None, tmp_path: Path,
                                                         env: dict[str, str]) -> None:
    """Two long points: one requeued from outside (``scontrol requeue``: SIGTERM, Slurm
    requeues), one sent the time-limit warning (USR2: it requeues itself). Both checkpoint at a
    step, rerun with SLURM_RESTART_COUNT=1, resume and match an uninterrupted local sweep."""
    recipe = _recipe(tmp_path, LONG, [0, 1])
    out = tmp_path / "slurm"
    sweep = _samat("sweep", str(recipe), "sweep.launcher.name=slurm",
                   "sweep.launcher.gpus_per_point=0", "sweep.launcher.time_min=10",
                   "sweep.launcher.max_requeues=1", "--output", str(out), "--wait",
                   env=env, cwd=tmp_path)
    points = [out / "seed=0", out / "seed=1"]
    _wait_until(lambda: all((p / results.CHECKPOINT).is_file() and (p / ".samat.lock").is_file()
                            for p in points) or sweep.poll() is not None,
                90, "both points to run and checkpoint")
    status = subprocess.run([sys.executable, "-m", "samat", "sweep", str(out), "--status",
                             "--json"], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    states = json.loads(status.stdout)
    jobs = [read_record(p)["job_id"] for p in points]
    array = jobs[0].split("_")[0]
    assert [(s["state"], s["job_id"], s["host"]) for s in states] == [
        ("running", jobs[0], socket.gethostname()), ("running", jobs[1], socket.gethostname())]
    _run("squeue", "-r", "-j", array, "-o", "%.10i %.22j %.8T %.6M %.9r %N")
    _run("scontrol", "show", "job", jobs[0])
    assert not any((p / results.METRICS).exists() for p in points), "make the points longer"
    subprocess.run(["scontrol", "requeue", jobs[0]], check=True, timeout=30)
    subprocess.run(["scancel", "--signal=USR2", jobs[1]], check=True, timeout=30)
    local = _samat("sweep", str(recipe), "--output", str(tmp_path / "local"), env=env,
                   cwd=tmp_path)  # the uninterrupted reference, while Slurm requeues
    _wait_until(lambda: all(read_record(p).get("state") == "stopped" for p in points)
                or sweep.poll() is not None, 60, "both points to stop at a checkpoint")
    _run("squeue", "-r", "--states=all", "-j", array, "-o", "%.10i %.22j %.8T %.6M %.9r %N")
    _wait_until(lambda: all(read_record(p).get("restart_count") == 1 for p in points)
                or sweep.poll() is not None, 90, "both points to restart")
    _run("squeue", "-r", "-j", array, "-o", "%.10i %.22j %.8T %.6M %.9r %N")
    _run("scontrol", "show", "job", jobs[0])
    code, _, err = _finish(sweep)
    assert code == 0, err
    assert _finish(local)[0] == 0
    logs = [(out / ".submitit" / job / f"{job}_0_log.err").read_text() for job in jobs]
    assert "stopped (preempted) at epoch" in logs[0]
    assert "stopped (time limit) at epoch" in logs[1]
    assert "requeueing after the time limit (1 of at most 1)" in logs[1]
    for point, job in zip(points, jobs, strict=True):
        record = read_record(point)
        assert (record["state"], record["job_id"], record["restart_count"]) == ("done", job, 1)
        resumed = re.search(r"resumed \S+ at epoch (\d+), step (\d+)",
                            (point / results.LOG).read_text())
        assert resumed and 0 < int(resumed.group(2)) < 7680, "resumed mid-training"
        assert _metrics(out, point.name) == _metrics(tmp_path / "local", point.name)
    assert read_record(points[1])["time_limits"] == 1


def test_a_cancelled_job_is_reported_failed_not_waited_for(slurm: None, tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    recipe = _recipe(tmp_path, SHORT, [0])
    out = tmp_path / "slurm"
    sweep = _samat("sweep", str(recipe), "sweep.launcher.name=slurm",
                   "sweep.launcher.gpus_per_point=0",
                   "sweep.launcher.slurm_additional={begin: now+600}", "--output", str(out),
                   "--wait", env=env, cwd=tmp_path)
    _wait_until(lambda: read_record(out / "seed=0").get("job_id") or sweep.poll() is not None,
                60, "the launch record")
    job = read_record(out / "seed=0")["job_id"]
    status = subprocess.run([sys.executable, "-m", "samat", "sweep", str(out), "--status"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert re.search(rf"0 +seed=0 +pending +{job} +slurm job {job}: pending \(BeginTime\)",
                     status.stdout), status.stdout
    _run("squeue", "-j", job, "-o", "%.10i %.22j %.8T %.9r")
    subprocess.run(["scancel", job], check=True, timeout=30)
    code, _, err = _finish(sweep, timeout=60)
    assert code == 2
    assert (f"samat: error: sweep: 1 point(s) failed, first seed=0: Slurm job {job} ended "
            "without a result (cancelled;") in err
    assert read_record(out / "seed=0")["state"] == "failed"


@pytest.mark.slow
def test_slurms_own_time_limit_warning_requeues_the_point(slurm: None, tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    """Slurm's own timer: time_min=1, signal_delay_s=20. slurmctld checks time limits every
    30 s and warns early rather than late, so USR2 comes 10-40 s after each start; the point
    trains ~45 s, so it requeues itself at least once (once per rerun while it still trains)
    and ends as an uninterrupted run. About 2 minutes, hence slow (run with -m slow)."""
    recipe = _recipe(tmp_path, {**LONG, "train": {**LONG["train"], "epochs": 300}}, [0])
    out = tmp_path / "slurm"
    sweep = _samat("sweep", str(recipe), "sweep.launcher.name=slurm",
                   "sweep.launcher.gpus_per_point=0", "sweep.launcher.time_min=1",
                   "sweep.launcher.signal_delay_s=20", "sweep.launcher.max_requeues=10",
                   "--output", str(out), "--wait",
                   env=env, cwd=tmp_path)
    local = _samat("sweep", str(recipe), "--output", str(tmp_path / "local"), env=env,
                   cwd=tmp_path)
    code, _, err = _finish(sweep, timeout=240)
    assert code == 0, err
    assert _finish(local, timeout=120)[0] == 0
    record = read_record(out / "seed=0")
    job = record["job_id"]
    _run("scontrol", "show", "job", job)
    log = (out / ".submitit" / job / f"{job}_0_log.err").read_text()
    assert "stopped (time limit) at epoch" in log and "requeueing after the time limit (1 of" in log
    assert record["time_limits"] >= 1 and record["restart_count"] == record["time_limits"]
    assert _metrics(out, "seed=0") == _metrics(tmp_path / "local", "seed=0")
