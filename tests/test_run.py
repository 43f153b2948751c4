"""``samat run`` end to end: resume edge cases, locks, and SIGKILL at any point.

Every kill test ends with ``metrics.json`` and ``history.jsonl`` equal to an uninterrupted run's,
wall-clock fields aside."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import one_thread
from run_fixtures import kill_on_attack_call, without_wall_clock

from samat import runner as run_module
from samat import testing
from samat.errors import SamatError
from samat.locking import RunLock
from samat.recipe import recipe_from_dict

pytestmark = pytest.mark.usefixtures("fixture_task")

RECIPE = {
    "task": {"name": "fixture", "n_train": 512, "n_test": 512},
    "seed": 1,
    "device": "cpu",
    "train": {
        "epochs": 30, "batch_size": 64, "checkpoint_every": 3,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "schedule": {"name": "step", "milestones": [10], "gamma": 0.5},
        "weight_perturbation": {"name": "sam", "rho": 0.1},
        "input_perturbation": {"name": "pgd", "norm": "linf", "eps": 0.1, "alpha": 0.05,
                               "steps": 2},  # random start: the RNG must be restored on resume
    },
    "eval": {"batch_size": 64,
             "attacks": [{"name": "pgd", "norm": "linf", "eps": 0.2, "alpha": 0.05, "steps": 3},
                         {"name": "fgsm", "eps": 0.1}]},
}


def write_recipe(tmp_path: Path, **train: object) -> Path:
    data = json.loads(json.dumps(RECIPE))
    data["train"].update(train)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def outcome(run_dir: Path) -> tuple[object, object]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return without_wall_clock(metrics), without_wall_clock(history)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple]:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    recipe = write_recipe(tmp)
    with one_thread(), testing.fixture_plugin():
        run_module.run(recipe, [f"output_dir={tmp / 'run'}"])
    return recipe, outcome(tmp / "run")


def _start(recipe: Path, out: Path, env: dict[str, str], *extra: str,
           script: str = "") -> subprocess.Popen:
    """``samat run`` in a subprocess; ``script`` runs first (to plant a kill)."""
    main = "import sys; from samat.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", f"{script}\n{main}", "run", str(recipe), f"output_dir={out}",
         *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(
        tmp_path: Path, uninterrupted: tuple[Path, tuple], fixture_env: dict[str, str]) -> None:
    recipe, out = uninterrupted[0], tmp_path / "run"  # the same recipe file
    rng = random.Random(7)
    for attempt in range(3):
        proc = _start(recipe, out, fixture_env, *(["--resume"] if attempt else []))
        deadline = time.time() + 120
        while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.2, 1.0))  # somewhere in training (checkpoints every 3 steps)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = _start(recipe, out, fixture_env, "--resume")
    assert done.wait(timeout=300) == 0, done.stderr.read()
    assert outcome(out) == uninterrupted[1]


# A process that SIGKILLs itself half-way through writing its 4th checkpoint.
KILL_IN_CHECKPOINT_WRITE = """
import os, signal, torch
original = torch.save
count = [0]
def save(obj, f, *args, **kwargs):
    count[0] += 1
    if count[0] == 4:
        f.write(b"PK\\x03\\x04 half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return original(obj, f, *args, **kwargs)
torch.save = save
"""

# A process that SIGKILLs itself on the second batch of the evaluation's first attack (its
# first batch is kept in eval_state/: the resumed evaluation goes on from the second).
KILL_IN_EVALUATION = kill_on_attack_call(2)


# A process that SIGKILLs itself half-way through writing the exported model.
KILL_IN_MODEL_EXPORT = """
import os, signal, safetensors.torch
def save_model(model, filename, *args, **kwargs):
    with open(filename, "wb") as f:
        f.write(b"half a model")
    os.kill(os.getpid(), signal.SIGKILL)
safetensors.torch.save_model = save_model
"""


@pytest.mark.parametrize("script", [KILL_IN_CHECKPOINT_WRITE, KILL_IN_EVALUATION,
                                    KILL_IN_MODEL_EXPORT],
                         ids=["during-checkpoint-write", "during-evaluation",
                              "during-model-export"])
def test_sigkill_at_a_chosen_point_then_resume_equals_uninterrupted(
        tmp_path: Path, uninterrupted: tuple[Path, tuple], fixture_env: dict[str, str],
        script: str) -> None:
    recipe, out = uninterrupted[0], tmp_path / "run"  # the same recipe file
    killed = _start(recipe, out, fixture_env, script=script)
    assert killed.wait(timeout=300) == -signal.SIGKILL
    assert not (out / "metrics.json").exists()
    if script is KILL_IN_CHECKPOINT_WRITE:  # the half-written temporary is left behind
        assert any(p.name.endswith(".partial") for p in (out / "checkpoints").iterdir())
    if script is KILL_IN_MODEL_EXPORT:
        assert any(p.name.endswith(".partial") for p in out.iterdir())
        assert not (out / "model.safetensors").exists() and not (out / "model.json").exists()
    done = _start(recipe, out, fixture_env, "--resume")
    assert done.wait(timeout=300) == 0, done.stderr.read()
    assert outcome(out) == uninterrupted[1]
    if script is KILL_IN_EVALUATION:  # the attack went on from its second batch
        log = (out / "log.txt").read_text()
        assert "pgd-linf-0.2: resuming at batch 2 (64 of 512 examples done)" in log
        assert "natural: kept from an earlier evaluation" in log
        assert not (out / "eval_state").exists()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.pt"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".partial")]
    assert (out / "model.json").is_file() and (out / "model.safetensors").is_file()


def test_resume_never_picks_an_older_run_when_the_newest_crashed_early(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path, epochs=1, checkpoint_every=None)
    run_module.run(recipe)
    (finished,) = (tmp_path / "runs" / "recipe").iterdir()
    stamp = (finished / "metrics.json").stat().st_mtime_ns
    crashed = tmp_path / "runs" / "recipe" / (finished.name + "-2")  # started later
    crashed.mkdir()
    (crashed / "config.yaml").write_text((finished / "config.yaml").read_text())
    with pytest.raises(SamatError, match=f"{crashed.name} stopped before its first checkpoint"):
        run_module.run(recipe, resume=True)
    assert (finished / "metrics.json").stat().st_mtime_ns == stamp


def test_resuming_a_finished_run_rewrites_nothing(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, epochs=1)
    out = [f"output_dir={tmp_path / 'run'}"]
    first = run_module.run(recipe, out)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")}
    again = run_module.run(recipe, out, resume=True)
    assert again == json.loads(json.dumps(first))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")} == before


def test_the_function_samat_run_stays_callable_after_a_first_call(tmp_path: Path) -> None:
    import samat

    recipe = write_recipe(tmp_path, epochs=1, checkpoint_every=None)
    first = samat.run(recipe, [f"output_dir={tmp_path / 'a'}"])
    second = samat.run(recipe, [f"output_dir={tmp_path / 'b'}"])  # was: 'module' not callable
    first, second = without_wall_clock(first), without_wall_clock(second)
    assert first["natural"] == second["natural"] and first["attacks"] == second["attacks"]


def test_a_different_recipe_is_refused_naming_each_differing_value(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, epochs=1)
    out = f"output_dir={tmp_path / 'run'}"
    run_module.run(recipe, [out])
    with pytest.raises(SamatError, match=r"\(saved vs now\): seed: 1 vs 2; "
                       r"train.optimizer.lr: 0.1 vs 0.2; resume with the same recipe"):
        run_module.run(recipe, [out, "train.optimizer.lr=0.2", "seed=2"], resume=True)


def test_a_run_directory_in_use_is_refused_naming_its_holder(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, epochs=1)
    out = tmp_path / "run"
    run_module.run(recipe, [f"output_dir={out}"])
    with RunLock(out):  # as another live process would hold it
        with pytest.raises(SamatError, match=rf"is in use by pid {os.getpid()} on "):
            run_module.run(recipe, [f"output_dir={out}"], resume=True)


def test_a_killed_holder_is_waited_for_then_resumed(
        tmp_path: Path, uninterrupted: tuple[Path, tuple], fixture_env: dict[str, str]) -> None:
    recipe, out = uninterrupted[0], tmp_path / "run"  # the same recipe file
    proc = _start(recipe, out, fixture_env)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / ".samat.lock").exists()  # left behind, heartbeat fresh, holder gone
    start = time.monotonic()
    metrics = run_module.run(recipe, [f"output_dir={out}"], resume=True)
    assert metrics["status"] == "finished" and time.monotonic() - start < 30
    assert not (out / ".samat.lock").exists()
    assert outcome(out) == uninterrupted[1]


def test_no_run_directory_is_written_for_a_recipe_that_cannot_build(tmp_path: Path) -> None:
    data = {**RECIPE, "output_dir": str(tmp_path / "run")}
    data["train"] = {**RECIPE["train"], "weight_perturbation": {"name": "sam", "rho": -1}}
    with pytest.raises(SamatError, match="rho must be > 0"):
        run_module.run("r.yaml", recipe=recipe_from_dict(data))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_stop_signal_checkpoints_at_the_next_step_then_resume_equals_uninterrupted(
        tmp_path: Path, uninterrupted: tuple[Path, tuple], fixture_env: dict[str, str],
        signum: signal.Signals) -> None:
    recipe, out = uninterrupted[0], tmp_path / "run"
    # every step is slow enough to be interrupted; checkpoints only at epoch ends
    slow = "import time, samat.step as s\nf = s.train_step\n" \
           "s.train_step = lambda *a, **k: (time.sleep(0.02), f(*a, **k))[1]\n" \
           "import samat.train as t\nt.train_step = s.train_step"
    proc = _start(recipe, out, fixture_env, "train.checkpoint_every=null", script=slow)
    deadline = time.time() + 120
    while not (out / "history.jsonl").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # inside the second epoch
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == 4
    error = [line for line in proc.stderr.read().splitlines() if line.startswith("samat: ")]
    assert len(error) == 1 and f"stopped ({signum.name}) at epoch 2, batch " in error[0]
    assert not (out / "metrics.json").exists() and not (out / ".samat.lock").exists()
    state = __import__("torch").load(out / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < state["progress"]["batch"]  # a mid-epoch checkpoint written on the signal
    done = _start(recipe, out, fixture_env, "train.checkpoint_every=null", "--resume")
    assert done.wait(timeout=300) == 0, done.stderr.read()
    assert outcome(out)[0] == uninterrupted[1][0]
