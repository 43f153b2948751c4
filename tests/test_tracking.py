"""Run events through the ``samat_on_*`` hooks, recipe loggers (``logging:``) and
``metrics.csv`` — on the fixture task, with an in-process recording plugin."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import pytest

from samat import (
    EpochEnded,
    EvalResult,
    RunEnded,
    RunStarted,
    SamatError,
    StepLogged,
    UnknownNameError,
    hookimpl,
    interrupts,
    testing,
)
from samat.cli import main
from samat.model_eval import run_eval
from samat.recipe import recipe_from_dict
from samat.runner import run
from samat.train import LOG_EVERY, Stopped

pytestmark = pytest.mark.usefixtures("fixture_task")


class Recorder:
    """A logger and a plugin alike: keeps every event it is sent."""

    def __init__(self, fail: bool = False, stop_at: int | None = None) -> None:
        self.events: list[Any] = []
        self.fail, self.stop_at = fail, stop_at

    def _keep(self, event: Any) -> None:
        self.events.append(event)
        if self.stop_at is not None and getattr(event, "step", 0) == self.stop_at:
            interrupts.request_stop("test")
        if self.fail:
            raise RuntimeError("logger broke")

    @hookimpl
    def samat_on_run_started(self, event: RunStarted) -> None:
        self._keep(event)

    @hookimpl
    def samat_on_step_logged(self, event: StepLogged) -> None:
        self._keep(event)

    @hookimpl
    def samat_on_epoch_ended(self, event: EpochEnded) -> None:
        self._keep(event)

    @hookimpl
    def samat_on_eval_result(self, event: EvalResult) -> None:
        self._keep(event)

    @hookimpl
    def samat_on_run_ended(self, event: RunEnded) -> None:
        self._keep(event)


class LoggerPlugin:
    """Registers ``recorder`` (options: ``fail``) as the logger ``recorder``."""

    built: list[Recorder] = []

    @hookimpl
    def samat_register_loggers(self, register: Any) -> None:
        def factory(fail: bool = False) -> Recorder:
            """Keeps events in memory (tests)."""
            self.built.append(Recorder(fail))
            return self.built[-1]

        register("recorder", factory)
        register("bad", BadLogger)


class BadLogger:
    """A hook method whose argument is not the hook's."""

    @hookimpl
    def samat_on_step_logged(self, evnt: StepLogged) -> None:
        pass


def recipe(tmp_path: Path, **top: Any) -> Any:
    data = {"task": {"name": "fixture", "n_train": 96, "n_test": 32}, "device": "cpu",
            "output_dir": str(tmp_path / "run"),
            "train": {"iterations": 25, "batch_size": 8, "eval_every": 1, "checkpoint_every": 5,
                      "eval_attack": {"name": "fgsm", "eps": 0.1}},
            "eval": {"attacks": [{"name": "fgsm", "eps": 0.1}]}, **top}
    return recipe_from_dict(data)


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_a_plugin_hears_every_event_of_a_run_and_metrics_csv_has_them(tmp_path):
    recorder = Recorder()
    with testing.registered(recorder, "recorder"):
        metrics = run("r.yaml", recipe=recipe(tmp_path))
    run_dir = tmp_path / "run"
    kinds = [type(e).__name__ for e in recorder.events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunEnded"
    started, ended = recorder.events[0], recorder.events[-1]
    assert started.run_dir == str(run_dir) and started.config["train"]["iterations"] == 25
    assert not started.resumed and started.total_steps == 25
    assert ended.status == "finished" and ended.metrics == metrics and ended.step == 25
    steps = [e for e in recorder.events if isinstance(e, StepLogged)]
    # every LOG_EVERY steps and at each epoch's end (12 batches an epoch: 10, 12, 22, 24, 25)
    assert [e.step for e in steps] == [LOG_EVERY, 12, 22, 24, 25]
    assert set(steps[0].metrics) == {"loss", "accuracy", "lr", "steps_per_s"}
    assert [e.epoch for e in steps] == [1, 1, 2, 2, 3]
    epochs = [e for e in recorder.events if isinstance(e, EpochEnded)]
    assert [(e.epoch, e.step) for e in epochs] == [(1, 12), (2, 24), (3, 25)]
    assert {"train_loss", "train_accuracy", "lr"} <= set(epochs[0].metrics)
    evals = [(e.label, e.final, e.step) for e in recorder.events if isinstance(e, EvalResult)]
    assert evals == [("natural", False, 12), ("fgsm-0.1", False, 12),
                     ("natural", False, 24), ("fgsm-0.1", False, 24),
                     ("natural", False, 25), ("fgsm-0.1", False, 25),
                     ("natural", True, 25), ("fgsm-0.1", True, 25)]
    final = [e for e in recorder.events if isinstance(e, EvalResult) and e.final]
    assert final[1].metrics["accuracy"] == metrics["attacks"][0]["accuracy"]
    assert final[0].n_examples == 32
    table = rows(run_dir)
    assert [(r["step"], r["event"]) for r in table][:4] == [
        ("10", "step"), ("12", "step"), ("12", "epoch"), ("12", "eval")]
    assert float(table[-1]["final/fgsm-0.1/accuracy"]) == metrics["attacks"][0]["accuracy"]
    assert len(table) == len(recorder.events) - 2  # a row per event but start and end


def test_a_failing_hook_is_logged_once_and_the_run_finishes(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "samat"), \
            testing.registered(Recorder(fail=True), "broken"):
        metrics = run("r.yaml", recipe=recipe(tmp_path))
    assert metrics["status"] == "finished"
    warned = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert len(warned) == 5  # one per hook, not one per event
    assert "samat_on_step_logged failed (further failures not shown): RuntimeError: " \
           "logger broke" in "\n".join(warned)


def test_a_resumed_run_continues_metrics_csv_without_repeating_rows(tmp_path):
    recorder = Recorder(stop_at=12)
    try:
        with testing.registered(recorder, "recorder"), pytest.raises(Stopped):
            run("r.yaml", recipe=recipe(tmp_path))
    finally:
        interrupts.clear()
    assert recorder.events[-1].status == "stopped" and recorder.events[-1].step == 12
    assert [(r["step"], r["event"]) for r in rows(tmp_path / "run")][-1] == ("12", "eval")
    with (tmp_path / "run" / "metrics.csv").open("a") as stream:
        stream.write("12,1,step,0.5")  # a row torn by a kill
    again = Recorder()
    with testing.registered(again, "again"):
        run("r.yaml", recipe=recipe(tmp_path), resume=True)
    assert again.events[0].resumed and again.events[0].step == 12
    assert [(int(r["step"]), r["event"]) for r in rows(tmp_path / "run")] == [
        (10, "step"), (12, "step"), (12, "epoch"), (12, "eval"), (12, "eval"),
        (22, "step"), (24, "step"), (24, "epoch"), (24, "eval"), (24, "eval"),
        (25, "step"), (25, "epoch"), (25, "eval"), (25, "eval"), (25, "final"), (25, "final")]


def test_recipe_loggers_are_built_validated_and_sent_events(tmp_path):
    LoggerPlugin.built = []
    with testing.registered(LoggerPlugin(), "loggers"):
        run("r.yaml", recipe=recipe(tmp_path, logging=["recorder", {"name": "recorder",
                                                                   "fail": True}]))
        built = LoggerPlugin.built
        assert len(built) == 2 and built[0].events[-1].status == "finished"
        assert [type(e) for e in built[0].events] == [type(e) for e in built[1].events]
        with pytest.raises(UnknownNameError, match=r"logging\.0\.name"):
            run("r.yaml", recipe=recipe(tmp_path / "b", logging=["recorderr"]))
        with pytest.raises(SamatError, match=r"Unknown key 'logging\.1\.fial'"):
            run("r.yaml", recipe=recipe(tmp_path / "c", logging=["recorder", {
                "name": "recorder", "fial": True}]))
        with pytest.raises(SamatError, match=r"logging\.0 \(bad\): not a valid logger: .*"
                                             r"samat_on_step_logged"):
            run("r.yaml", recipe=recipe(tmp_path / "e", logging=["bad"]))
        with pytest.raises(SamatError, match=r"logging\.0\.fail: expected true or false"):
            run("r.yaml", recipe=recipe(tmp_path / "d", logging=[{"name": "recorder",
                                                                 "fail": 3}]))
    assert not any((tmp_path / d / "run").exists() for d in "bcde")


def test_samat_eval_sends_its_results_and_writes_metrics_csv(tmp_path):
    run("r.yaml", recipe=recipe(tmp_path))
    recorder = Recorder()
    with testing.registered(recorder, "recorder"):
        out, metrics = run_eval(str(tmp_path / "run"), output=str(tmp_path / "eval"))
    started, ended = recorder.events[0], recorder.events[-1]
    assert started.kind == "eval" and started.run_dir == str(out)
    assert [(e.label, e.final) for e in recorder.events[1:-1]] == [
        ("natural", True), ("fgsm-0.1", True)]
    assert ended.status == "finished" and ended.metrics == metrics
    assert [r["event"] for r in rows(out)] == ["final", "final"]
    assert float(rows(out)[0]["final/natural/accuracy"]) == metrics["natural"]["accuracy"]


def test_samat_list_loggers(capsys):
    with testing.registered(LoggerPlugin(), "loggers"):
        assert main(["list", "loggers"]) == 0
    out = capsys.readouterr().out
    assert "recorder" in out and "Keeps events in memory" in out
