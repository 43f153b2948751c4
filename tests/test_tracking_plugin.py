"""The built-in loggers (``plugins/samat_tracking``): a digits run with ``logging:
[tensorboard, wandb, mlflow]`` writes logs each library reads back; options and missing
libraries are one-line errors."""

from __future__ import annotations

import glob
import importlib.util
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import one_thread

import samat_tracking.plugin
from samat import plugins
from samat.cli import main

RECIPE = {
    "name": "digits_tracked", "seed": 0, "device": "cpu",
    "task": {"name": "image_classification", "dataset": "digits", "model": "small_cnn",
             "width": 4, "n_train": 160},
    "train": {"iterations": 12, "batch_size": 16, "optimizer": {"name": "sgd", "lr": 0.05},
              "weight_perturbation": {"name": "sam", "rho": 0.05}, "eval_every": 1,
              "eval_examples": 32},
    "eval": {"n_examples": 32, "batch_size": 32, "attacks": [{"name": "fgsm", "eps": "8/255"}]},
    "logging": ["tensorboard", "wandb", "mlflow"],
}


@pytest.fixture(autouse=True)
def tracking_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The tracking plugin (registered in-process where its entry point is not installed);
    W&B's own config and caches under ``tmp_path``, its mode left to the logger's default."""
    if plugins.plugin_manager().get_plugin("tracking") is None:
        plugins.register_plugin(samat_tracking.plugin, "tracking")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb_home"))


def wandb_records(path: Path) -> list[Any]:
    """The records of a ``.wandb`` file: W&B's header, then a LevelDB-style log of 32 KiB
    blocks whose chunks (full, first, middle, last) carry ``wandb_internal_pb2.Record``s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, chunks, records = 7, b"", []
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a header: padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:
            break
        chunks += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def test_a_digits_run_writes_tensorboard_wandb_and_mlflow_logs_read_back(tmp_path, capfd):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    recipe = tmp_path / "digits.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run_dir = tmp_path / "run"
    hooks = (sys.exit, sys.excepthook)
    with one_thread():
        assert main(["run", str(recipe), f"output_dir={run_dir}"]) == 0
    assert (sys.exit, sys.excepthook) == hooks  # W&B's replacements are undone
    metrics = json.loads((run_dir / "metrics.json").read_text())
    natural, fgsm = metrics["natural"]["accuracy"], metrics["attacks"][0]["accuracy"]
    err = capfd.readouterr().err.splitlines()
    for name in ("tensorboard", "wandb", "mlflow"):  # one line each says where logs go
        assert len([line for line in err if line.lower().startswith(name)]) == 1, err
    assert not [line for line in err if "wandb" in line.lower() and "offline run" not in line]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    assert [(e.step, e.value) for e in board.Scalars("final/natural/accuracy")] == [
        (12, natural)]
    assert [e.value for e in board.Scalars("final/fgsm-8/255/accuracy")] == [fgsm]
    assert [e.step for e in board.Scalars("train/loss")] == [10, 12]
    assert [e.step for e in board.Scalars("eval/natural/accuracy")] == [10, 12]
    hparams = {}
    for content in board.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            hparams = {k: v.string_value or v.number_value
                       for k, v in data.session_start_info.hparams.items()}
    assert hparams["train.weight_perturbation.name"] == "sam"
    assert hparams["train.iterations"] == 12 and hparams["status"] == "finished"

    (offline,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    history, config = {}, {}
    for record in wandb_records(Path(offline)):
        kind = record.WhichOneof("record_type")
        items = (record.history.item if kind == "history" else
                 record.run.config.update if kind == "run" else [])
        values = {"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                  for item in items}
        (history if kind == "history" else config).update(values)
    assert history["final/natural/accuracy"] == natural and history["_step"] == 12
    assert history["final/fgsm-8/255/accuracy"] == fgsm
    assert config["task"]["dataset"] == "digits" and config["train"]["iterations"] == 12

    from mlflow.tracking import MlflowClient

    client = MlflowClient((run_dir / "mlruns").as_uri())
    run_id = (run_dir / "mlflow-run-id").read_text()
    assert [(m.step, m.value) for m in client.get_metric_history(
        run_id, "final/natural/accuracy")] == [(12, natural)]
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [10, 12]
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.params["task.dataset"] == "digits"


def run_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str], *overrides: str
                 ) -> tuple[int, str]:
    recipe = tmp_path / "digits.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    code = main(["validate", str(recipe), *overrides])
    return code, capsys.readouterr().err.strip()


def test_a_logger_whose_library_is_missing_names_the_pip_extra(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    code, err = run_validate(tmp_path, capsys, "logging=[tensorboard, wandb]")
    assert code == 2
    assert err == ("samat: error: logging.1 (wandb): wandb is not installed; pip install "
                   "'samat[tracking]' (or pip install wandb)")


@pytest.mark.parametrize(("override", "message"), [
    ("logging=[{name: wandb, mode: cloud}]",
     "logging.0: mode must be one of offline, online, disabled, got 'cloud'"),
    ("logging=[{name: mlflow, experimnt: x}]", "Unknown key 'logging.0.experimnt'"),
    ("logging=[{name: tensorboard, log_dir: 3}]", "logging.0.log_dir: expected a string"),
    ("logging=[tensorbord]", "Did you mean: tensorboard"),
])
def test_logger_options_are_checked_before_anything_is_written(tmp_path, capsys, override,
                                                               message):
    code, err = run_validate(tmp_path, capsys, override)
    assert code == 2 and message in err and len(err.splitlines()) == 1
