"""Trainer: resumes exactly (also after SIGKILL), mid-epoch checkpoints, SAM+AT recipes."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from samat import runner as run_module
from samat.errors import SamatError
from samat.recipe import recipe_from_dict
from samat.results import results_table
from samat.train import Diverged, Trainer

pytestmark = pytest.mark.usefixtures("fixture_task")

RECIPE = {
    "task": {"name": "fixture", "n_train": 512, "n_test": 512},
    "seed": 1,
    "device": "cpu",
    "train": {
        "epochs": 4,
        "batch_size": 64,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "schedule": {"name": "step", "milestones": [2], "gamma": 0.5},
        "weight_perturbation": {"name": "sam", "rho": 0.1},
        "input_perturbation": {"name": "pgd", "norm": "linf", "eps": 0.1, "alpha": 0.05,
                               "steps": 2},  # random start: the RNG must be restored on resume
    },
    "eval": {"attacks": [{"name": "pgd", "norm": "linf", "eps": 0.2, "alpha": 0.05,
                          "steps": 3}]},
}


def write_recipe(tmp_path: Path, **changes: object) -> Path:
    data = json.loads(json.dumps(RECIPE))
    data["train"].update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def comparable(metrics: dict) -> dict:
    keep = ("natural", "attacks", "report", "average_under_attack")
    out = {k: metrics[k] for k in keep}
    for a in out["attacks"]:
        a.pop("seconds")
    return out


def test_mid_epoch_crash_then_resume_matches_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe_path = write_recipe(tmp_path, checkpoint_every=3)
    full = run_module.run(recipe_path, [f"output_dir={tmp_path / 'full'}"])

    original_save = Trainer.save

    def crash_after_step_11(self: Trainer, path: Path, progress: dict | None = None) -> None:
        original_save(self, path, progress)
        if self.progress.step == 12:  # a mid-epoch checkpoint (8 steps per epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", crash_after_step_11)
    crashed = [f"output_dir={tmp_path / 'crashed'}"]
    with pytest.raises(KeyboardInterrupt):
        run_module.run(recipe_path, crashed)
    assert not (tmp_path / "crashed" / "metrics.json").exists()
    monkeypatch.setattr(Trainer, "save", original_save)
    resumed = run_module.run(recipe_path, crashed, resume=True)

    assert comparable(resumed) == comparable(full)
    for name, tensor in final_weights(tmp_path / "full").items():
        assert torch.equal(tensor, final_weights(tmp_path / "crashed")[name]), name
    history = [json.loads(line) for line in (tmp_path / "crashed" / "history.jsonl").open()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["lr"] == pytest.approx(0.05)


def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path,
                                                   fixture_env: dict[str, str]) -> None:
    recipe_path = write_recipe(tmp_path, epochs=60)
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "samat", "run", str(recipe_path), f"output_dir={killed_dir}"],
        cwd=tmp_path, env=fixture_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    history = killed_dir / "history.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed; raise epochs"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "metrics.json").exists()

    resumed = run_module.run(recipe_path, [f"output_dir={killed_dir}"], resume=True)
    full = run_module.run(recipe_path, [f"output_dir={tmp_path / 'full'}"])
    assert comparable(resumed) == comparable(full)
    for name, tensor in final_weights(tmp_path / "full").items():
        assert torch.equal(tensor, final_weights(killed_dir)[name]), name


def test_resume_refuses_a_different_recipe(tmp_path: Path) -> None:
    recipe_path = write_recipe(tmp_path, epochs=1)
    out = f"output_dir={tmp_path / 'run'}"
    run_module.run(recipe_path, [out])
    with pytest.raises(SamatError, match="differs from the one .* started with .*seed: 1 vs 2"):
        run_module.run(recipe_path, [out, "seed=2"], resume=True)


def test_resume_without_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe_path = write_recipe(tmp_path, epochs=1)
    with pytest.raises(SamatError, match=r"--resume: no run to resume under runs/recipe/"):
        run_module.run(recipe_path, resume=True)
    assert not (tmp_path / "runs").exists()


def test_output_dir_holding_a_run_is_not_overwritten(tmp_path: Path) -> None:
    recipe_path = write_recipe(tmp_path, epochs=1)
    out = f"output_dir={tmp_path / 'run'}"
    run_module.run(recipe_path, [out])
    with pytest.raises(SamatError, match="already holds a run; pass --resume"):
        run_module.run(recipe_path, [out])


def test_iteration_budget_and_history(tmp_path: Path) -> None:
    recipe_path = write_recipe(tmp_path, epochs=None, iterations=11, eval_every=0)
    metrics = run_module.run(recipe_path, [f"output_dir={tmp_path / 'run'}"])
    assert metrics["training"]["steps"] == 11 and metrics["training"]["epochs"] == 2
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").open()]
    assert [h["step"] for h in history] == [8, 11]
    assert "eval_accuracy" not in history[0]


def test_trainer_does_not_touch_batchnorm_stats_while_crafting() -> None:
    """One SAM+AT step updates BN running stats exactly once (first SAM pass only)."""
    components, trainer = run_module.prepare(recipe_from_dict(RECIPE))
    batchnorm = components.model.norm
    assert isinstance(batchnorm, torch.nn.BatchNorm1d)
    trainer.total_steps = 1
    trainer.fit()
    assert int(batchnorm.num_batches_tracked) == 1


def test_drop_last_skips_the_partial_batch(tmp_path: Path) -> None:
    recipe_path = write_recipe(tmp_path, epochs=2, batch_size=100, drop_last=True, eval_every=0)
    metrics = run_module.run(recipe_path, [f"output_dir={tmp_path / 'run'}"])
    assert metrics["training"]["steps"] == 2 * (512 // 100)
    with pytest.raises(SamatError, match="train.batch_size: 1000 exceeds the 512 training"):
        run_module.run(recipe_path, [f"output_dir={tmp_path / 'big'}", "train.batch_size=1000"])
    assert not (tmp_path / "big").exists()


# -- non-finite values --------------------------------------------------------------------------
def _bare(constant: str) -> None:
    pytest.fail(f"bare {constant} in JSON")


def _strict(path: Path) -> list[dict]:
    """JSON lines parsed strictly (a bare NaN/Infinity fails the test)."""
    return [json.loads(line, parse_constant=_bare) for line in path.read_text().splitlines()]


def test_divergence_stops_keeps_the_last_finite_checkpoint_and_says_so(tmp_path: Path) -> None:
    from nonfinite_fixtures import poison_task, recipe

    data = recipe(tmp_path, weight_perturbation={"name": "sam", "rho": 0.05})
    data["task"]["nan_calls"] = [2 * 5 + 1]  # step 6 = epoch 2, batch 2 (2 loss calls a step)
    with poison_task():
        with pytest.raises(Diverged) as caught:
            run_module.run("r.yaml", recipe=recipe_from_dict(data))
    run_dir = tmp_path / "run"
    assert (caught.value.epoch, caught.value.batch, caught.value.step) == (2, 2, 6)
    assert caught.value.exit_code == 3
    message = str(caught.value)
    assert "epoch 2, batch 2/4 (step 6): loss is nan" in message
    assert "last finite checkpoint (epoch 1, step 4) is kept" in message
    metrics = json.loads((run_dir / "metrics.json").read_text(), parse_constant=_bare)
    assert metrics["status"] == "diverged" and metrics["natural"] is None
    assert metrics["diverged"] == {"epoch": 2, "batch": 2, "step": 6, "what": "loss is nan",
                                   "value": "nan", "on_nonfinite": "stop",
                                   "checkpoint": {"epoch": 1, "step": 4}}
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["progress"]["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert [h["epoch"] for h in _strict(run_dir / "history.jsonl")] == [1]
    assert "records status: diverged" in (run_dir / "log.txt").read_text()


def test_skip_skips_the_step_restores_bn_statistics_and_counts(tmp_path: Path) -> None:
    from nonfinite_fixtures import poison_task, recipe

    data = recipe(tmp_path, on_nonfinite="skip")
    data["task"]["poison"] = 5  # one NaN input: its batch is skipped once per epoch
    with poison_task():
        metrics = run_module.run("r.yaml", recipe=recipe_from_dict(data))
    assert metrics["status"] == "finished" and metrics["training"]["skipped_steps"] == 3
    history = _strict(tmp_path / "run" / "history.jsonl")
    assert [h["skipped_steps"] for h in history] == [1, 2, 3]
    assert all(math.isfinite(h["train_loss"]) for h in history)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert state["model"]["1.num_batches_tracked"] == 3 * 4 - 3  # skipped batches not counted
    assert "skipped steps (non-finite, train.on_nonfinite=skip): 3" in results_table(metrics)


def test_stop_is_the_default_and_a_diverged_run_resumes_with_skip(tmp_path: Path) -> None:
    from nonfinite_fixtures import poison_task, recipe

    data = recipe(tmp_path)
    data["task"]["nan_calls"] = [7]  # epoch 2, batch 3
    with poison_task():
        with pytest.raises(Diverged):
            run_module.run("r.yaml", recipe=recipe_from_dict(data))
        data["train"]["on_nonfinite"] = "skip"  # the one key allowed to change on resume
        # the resumed task counts loss calls from 1 again: call 7 is now step 11, skipped
        metrics = run_module.run("r.yaml", recipe=recipe_from_dict(data), resume=True)
    assert metrics["status"] == "finished" and metrics["training"]["skipped_steps"] == 1
