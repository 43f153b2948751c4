"""Periodic evaluation and the best checkpoint: ``train.eval_every``/``eval_attack``/
``eval_examples``/``keep_best`` and ``eval.checkpoint`` (``samat.best``, the trainer, ``run``).

On this recipe (5 epochs of 4 steps) the natural and the robust accuracy of the periodic
evaluation peak at different epochs, both before the last."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from run_fixtures import kill_on_attack_call, without_wall_clock

from samat import runner as run_module
from samat.best import select
from samat.errors import SamatError
from samat.recipe import recipe_from_dict
from samat.train import Trainer

pytestmark = pytest.mark.usefixtures("fixture_task")

PERIODIC_ATTACK = {"name": "pgd", "norm": "linf", "eps": 0.2, "alpha": 0.05, "steps": 3}
RECIPE = {
    "task": {"name": "fixture", "n_train": 256, "n_test": 256},
    "seed": 2,
    "device": "cpu",
    "train": {
        "epochs": 5, "batch_size": 64, "checkpoint_every": 3,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "weight_perturbation": {"name": "sam", "rho": 0.1},
        "input_perturbation": {"name": "pgd", "norm": "linf", "eps": 0.1, "alpha": 0.05,
                               "steps": 2},  # random start: the RNG stream matters
        "eval_every": 1, "eval_attack": PERIODIC_ATTACK, "eval_examples": 128,
        "keep_best": "robust",
    },
    "eval": {"batch_size": 128, "attacks": [{"name": "fgsm", "eps": 0.1}]},
}
STEPS_PER_EPOCH = 4


def write_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def train(tmp_path: Path, name: str, *overrides: str) -> tuple[dict, Path]:
    """Run the recipe into ``tmp_path/name``; its metrics and run directory."""
    out = tmp_path / name
    return run_module.run(write_recipe(tmp_path), [f"output_dir={out}", *overrides]), out


def checkpoint(run_dir: Path, name: str) -> dict:
    return torch.load(run_dir / "checkpoints" / f"{name}.pt", weights_only=True)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def outcome(run_dir: Path) -> tuple[object, ...]:
    """Everything a run leaves, wall-clock fields aside: metrics, history, both checkpoints'
    weights (as lists) and best.pt's record."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    last, best = checkpoint(run_dir, "last"), checkpoint(run_dir, "best")
    weights = [[t.tolist() for t in c["model"].values()] for c in (last, best)]
    return (without_wall_clock(metrics), without_wall_clock(history(run_dir)), weights,
            best["progress"]["best"], best["progress"]["epoch"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple]:
    """The recipe file and the outcome of its uninterrupted run (keep_best: robust)."""
    from conftest import one_thread

    from samat import testing

    tmp = tmp_path_factory.mktemp("uninterrupted")
    with one_thread(), testing.fixture_plugin():
        _, out = train(tmp, "run")
    return write_recipe(tmp), outcome(out)


@pytest.mark.parametrize("criterion, key", [("natural", "eval_accuracy"),
                                            ("robust", "eval_robust_accuracy")])
def test_best_pt_holds_the_best_periodic_evaluation(tmp_path: Path, criterion: str,
                                                    key: str) -> None:
    metrics, out = train(tmp_path, "run", f"train.keep_best={criterion}")
    rows = history(out)
    assert [(r["eval_n_examples"], r["eval_attack"]["label"]) for r in rows] == \
        [(128, "pgd-linf-0.2")] * 5
    assert {k: rows[0]["eval_attack"][k] for k in PERIODIC_ATTACK} == PERIODIC_ATTACK
    values = [r[key] for r in rows]
    epoch = values.index(max(values)) + 1
    assert 1 < epoch < 5, values  # the recipe's best is neither the first nor the last epoch
    expected = {"epoch": epoch, "step": STEPS_PER_EPOCH * epoch, "criterion": criterion,
                "metric": "accuracy", "value": max(values), "n_examples": 128}
    if criterion == "robust":
        expected["attack"] = rows[0]["eval_attack"]
    best = checkpoint(out, "best")
    assert metrics["training"]["best"] == best["progress"]["best"] == expected
    assert best["progress"]["epoch"] == epoch
    assert not same_weights(best["model"], checkpoint(out, "last")["model"])
    _, short = train(tmp_path, "short", f"train.epochs={epoch}")  # constant lr: a prefix
    assert same_weights(best["model"], checkpoint(short, "last")["model"])


def test_natural_and_robust_select_different_epochs(tmp_path: Path) -> None:
    """The two criteria are not the same selection on this recipe (so the test above checks
    both)."""
    rows = history(train(tmp_path, "run")[1])
    natural = [r["eval_accuracy"] for r in rows]
    robust = [r["eval_robust_accuracy"] for r in rows]
    assert natural.index(max(natural)) != robust.index(max(robust))


def test_periodic_evaluation_leaves_training_unchanged(tmp_path: Path) -> None:
    _, evaluated = train(tmp_path, "evaluated")
    _, plain = train(tmp_path, "plain", "train.eval_every=0", "train.eval_attack=null",
                     "train.eval_examples=null", "train.keep_best=null")
    assert same_weights(checkpoint(evaluated, "last")["model"], checkpoint(plain, "last")["model"])
    assert [r["train_loss"] for r in history(evaluated)] == \
        [r["train_loss"] for r in history(plain)]
    assert not (plain / "checkpoints" / "best.pt").exists()
    assert "eval_accuracy" not in history(plain)[0]


def test_eval_checkpoint_best_evaluates_the_best_weights(tmp_path: Path) -> None:
    last, _ = train(tmp_path, "last")
    best, _ = train(tmp_path, "best", "eval.checkpoint=best")
    epoch = best["training"]["best"]["epoch"]
    assert last["checkpoint"] == {"name": "last", "path": "checkpoints/last.pt", "epoch": 5,
                                  "step": 20}
    assert best["checkpoint"] == {"name": "best", "path": "checkpoints/best.pt",
                                  **best["training"]["best"]}
    assert without_wall_clock(best["training"]) == without_wall_clock(last["training"])
    assert best["natural"] != last["natural"]
    short, _ = train(tmp_path, "short", f"train.epochs={epoch}")  # stopped at the best epoch
    assert best["natural"] == short["natural"]


def test_eval_checkpoint_best_equals_last_when_the_last_is_best(tmp_path: Path) -> None:
    """Evaluated only after the last epoch, the best checkpoint is the last one."""
    last, _ = train(tmp_path, "last", "train.eval_every=5")
    best, _ = train(tmp_path, "best", "train.eval_every=5", "eval.checkpoint=best")
    assert best["checkpoint"]["epoch"] == 5 and best["checkpoint"]["name"] == "best"
    keep = ("natural", "attacks", "average_under_attack", "report")
    assert without_wall_clock({k: best[k] for k in keep}) == \
        without_wall_clock({k: last[k] for k in keep})


def test_crash_between_best_and_last_then_resume_equals_uninterrupted(
        tmp_path: Path, uninterrupted: tuple[Path, tuple], monkeypatch: pytest.MonkeyPatch
) -> None:
    """best.pt is written before last.pt: a crash in between replays the epoch and ends as an
    uninterrupted run does."""
    recipe, out = uninterrupted[0], [f"output_dir={tmp_path / 'run'}"]
    original, written = Trainer.save, []

    def crash_after_second_best(self: Trainer, path: Path, progress: dict | None = None) -> None:
        original(self, path, progress)
        written.append(path.name)
        if written.count("best.pt") == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", crash_after_second_best)
    with pytest.raises(KeyboardInterrupt):
        run_module.run(recipe, out)
    monkeypatch.setattr(Trainer, "save", original)
    assert checkpoint(tmp_path / "run", "best")["progress"]["epoch"] > \
        checkpoint(tmp_path / "run", "last")["progress"]["epoch"]
    run_module.run(recipe, out, resume=True)
    assert outcome(tmp_path / "run") == uninterrupted[1]


# A process that SIGKILLs itself half-way through writing best.pt the second time.
KILL_IN_BEST_WRITE = """
import os, signal, samat.train as t
original = t.write_atomic
count = [0]
def write(path, content):
    if path.name == "best.pt":
        count[0] += 1
        if count[0] == 2:
            def half(stream):
                stream.write(b"PK\\x03\\x04 half a checkpoint")
                stream.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return original(path, half)
    return original(path, content)
t.write_atomic = write
"""

# A process that SIGKILLs itself inside the third periodic evaluation's attack.
KILL_IN_PERIODIC_EVALUATION = kill_on_attack_call(3)

# A process that SIGKILLs itself at the mid-epoch checkpoint of step 15 (epoch 4).
KILL_MID_EPOCH = """
import os, signal, samat.train as t
original = t.Trainer.save
def save(self, path, progress=None):
    original(self, path, progress)
    if self.progress.step == 15:
        os.kill(os.getpid(), signal.SIGKILL)
t.Trainer.save = save
"""


@pytest.mark.parametrize("script", [KILL_IN_BEST_WRITE, KILL_IN_PERIODIC_EVALUATION,
                                    KILL_MID_EPOCH],
                         ids=["during-best-write", "during-periodic-evaluation", "mid-epoch"])
def test_sigkill_then_resume_equals_uninterrupted(
        tmp_path: Path, uninterrupted: tuple[Path, tuple], fixture_env: dict[str, str],
        script: str) -> None:
    recipe, out = uninterrupted[0], tmp_path / "run"
    main = "import sys; from samat.cli import main; sys.exit(main(sys.argv[1:]))"
    killed = subprocess.run(
        [sys.executable, "-c", f"{script}\n{main}", "run", str(recipe), f"output_dir={out}"],
        env=fixture_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "metrics.json").exists()
    run_module.run(recipe, [f"output_dir={out}"], resume=True)
    assert outcome(out) == uninterrupted[1]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_select_keeps_the_first_of_equals_and_follows_the_task_direction() -> None:
    higher = SimpleNamespace(metric="loss", higher_is_better=True)
    lower = SimpleNamespace(metric="loss", higher_is_better=False)

    def row(value: float) -> dict:
        return {"eval_loss": value, "eval_n_examples": 8}

    first = select(None, row(2.0), "natural", higher, 1, 4)
    assert first == {"epoch": 1, "step": 4, "criterion": "natural", "metric": "loss",
                     "value": 2.0, "n_examples": 8}
    assert select(first, row(2.0), "natural", higher, 2, 8) is None
    assert select(first, row(3.0), "natural", higher, 2, 8)["epoch"] == 2
    assert select(first, row(1.0), "natural", lower, 2, 8)["epoch"] == 2
    assert select(first, row(3.0), "natural", lower, 2, 8) is None
    assert select(None, row(float("nan")), "natural", higher, 1, 4) is None


def test_a_missing_or_wrong_best_pt_is_one_line_naming_it(tmp_path: Path) -> None:
    data = {**RECIPE, "eval": {**RECIPE["eval"], "checkpoint": "best"}}
    _, trainer = run_module.prepare(recipe_from_dict(data))
    path = tmp_path / "checkpoints" / "best.pt"
    with pytest.raises(SamatError, match="no periodic evaluation gave a finite value"):
        trainer.use_checkpoint(tmp_path)
    trainer.progress.best = {"epoch": 2, "step": 8}
    with pytest.raises(SamatError, match=f"eval.checkpoint: best: {path} is missing"):
        trainer.use_checkpoint(tmp_path)
    path.parent.mkdir()
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(SamatError, match=f"{path} is unreadable"):
        trainer.use_checkpoint(tmp_path)
    trainer.save(path)  # epoch 0, not the recorded best epoch 2
    with pytest.raises(SamatError, match="from epoch 0, not the best epoch 2"):
        trainer.use_checkpoint(tmp_path)
