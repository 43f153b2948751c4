"""Smoke tests of benchmarks/: tiny settings, JSON structure only (no timing checks)."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
METHODS = {"sgd", "2x_sgd", "sam", "asam", "esam", "looksam", "fgsm_at", "pgd2_at"}


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The two benchmark scripts as modules (eval_overhead imports step_cost beside it)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return {name: importlib.import_module(name) for name in ("step_cost", "eval_overhead")}


def test_step_cost_smoke(bench: dict[str, ModuleType], tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "step_cost.json"
    argv = ["--models", "prn18", "--width", "4", "--batch-size", "4", "--steps", "5",
            "--rounds", "2", "--pgd-steps", "2", "--warmup", "0", "--device", "cpu",
            "--quiet", "--json", str(out)]
    returned = bench["step_cost"].main(argv)
    table = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results == json.loads(json.dumps(returned))

    assert set(results["models"]) == {"prn18"}
    prn = results["models"]["prn18"]
    assert set(prn["methods"]) == METHODS and prn["skipped"] == {}
    for name in METHODS:
        assert name in table
        row = prn["methods"][name]
        assert row["mean_s"] > 0 and row["median_s"] > 0
        assert math.isfinite(row["ratio_to_sgd"]) and row["ratio_to_sgd"] > 0
        assert row["ratio_min_to_sgd"] > 0
        assert row["peak_bytes"] > 0 and row["peak_ratio_to_sgd"] > 0
        assert len(prn["per_round_s"][name]) == 2
    assert prn["methods"]["sgd"]["ratio_to_sgd"] == 1.0
    assert prn["methods"]["sam"]["target_ratio"] == pytest.approx(2.05)
    assert prn["methods"]["looksam"]["target_ratio"] == pytest.approx(1.25)
    assert prn["methods"]["pgd2_at"]["target_ratio"] == pytest.approx(3.5)
    for row in prn["methods"].values():  # a verdict exactly where there is a target
        assert row["pass"] == (None if row["target_ratio"] is None
                               else row["ratio_to_sgd"] <= row["target_ratio"])
    assert prn["methods"]["asam"]["pass"] is None
    assert prn["sam_vs_2x_sgd"] > 0
    assert results["all_pass"] == all(
        w["sam_memory"]["pass"] and all(r["pass"] is not False for r in w["methods"].values())
        for w in results["models"].values())
    assert prn["info"]["width"] == 4 and prn["info"]["param_tensors"] == 56

    mem = prn["sam_memory"]
    assert mem["saved_bytes"] == mem["param_bytes"] > 0  # exactly one copy of the weights
    assert mem["copies"] == pytest.approx(1.0) and mem["pass"] is True
    # SAM's peak exceeds SGD's by its saved copy (plus the 4-byte gradient norm)
    assert mem["peak_extra_copies"] == pytest.approx(1.0, abs=1e-3)

    env = results["environment"]
    for key in ("torch", "threads", "device", "cpu_model"):
        assert env[key] not in (None, "")
    assert env["device"] == "cpu"
    assert results["config"]["pgd_steps"] == 2 and results["config"]["steps"] == 5


def test_steps_must_hold_whole_looksam_cycles(bench: dict[str, ModuleType]) -> None:
    with pytest.raises(SystemExit):
        bench["step_cost"].parse_args(["--steps", "3"])


def test_unregistered_rows_are_skipped_with_a_note(bench: dict[str, ModuleType],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    step_cost = bench["step_cost"]
    monkeypatch.setitem(step_cost.WEIGHT_ROWS, "esam", ("no_such_step", {}))
    assert step_cost.missing_perturbations(step_cost.row_names(10)) == {
        "esam": "weight perturbation 'no_such_step' is not registered"}


def test_deeplabv3_workload(bench: dict[str, ModuleType]) -> None:
    pytest.importorskip("segmentation_models_pytorch")
    step_cost = bench["step_cost"]
    cpu = torch.device("cpu")
    workload = step_cost.deeplabv3_workload(2, 16, "mobilenet_v2", 0, cpu)
    x, y = workload.batches[0]
    assert x.shape == (2, 3, 16, 16) and y.shape == (2, 16, 16)
    sam = step_cost.build_method("sam", workload, 1)
    assert step_cost.sam_saved_bytes(sam, x, y)["copies"] == pytest.approx(1.0)
    assert step_cost.peak_step_memory("sgd", workload, 1, 1, cpu) > 0


def test_eval_overhead_smoke(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    pytest.importorskip("torchattacks")
    out = tmp_path / "eval.json"
    argv = ["--width", "4", "--batch-size", "4", "--batches", "1", "--pgd-steps", "2",
            "--rounds", "2", "--device", "cpu", "--json", str(out)]
    returned = bench["eval_overhead"].main(argv)
    results = json.loads(out.read_text())
    assert results == json.loads(json.dumps(returned))
    assert results["ratio"] > 0 and results["ratio_min"] > 0
    assert results["target_ratio"] == pytest.approx(1.05)
    assert results["pass"] == (results["ratio"] <= results["target_ratio"])
    assert set(results["seconds"]) == {"samat", "torchattacks"}
    assert all(len(t["per_round"]) == 2 for t in results["seconds"].values())
    assert results["identical_without_random_start"] is True


def test_autoattack_reference_smoke(bench: dict[str, ModuleType], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny settings; ℓ∞ 0.5 fools every image quickly, so no Square query is spent."""
    pytest.importorskip("torchattacks")
    pytest.importorskip("pyautoattack")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("autoattack_reference")
    out = tmp_path / "aa.json"
    threads = torch.get_num_threads()
    returned = module.main(["--width", "2", "--n", "4", "--n-train", "32", "--epochs", "1",
                            "--eps", "0.5", "--json", str(out)])
    assert torch.get_num_threads() == threads  # restored
    results = json.loads(out.read_text())
    assert results == json.loads(json.dumps(returned))
    assert set(results["robust_accuracy"]) == {"samat", "reference"}
    assert results["config"]["n_images"] == 4 and results["config"]["width"] == 2
    assert results["config"]["reference"]["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert results["config"]["samat"]["version"] == "standard"
    assert results["environment"]["threads"] == 1
    for key in ("seconds_per_image", "cpu_seconds_per_image"):
        assert all(v > 0 for v in results[key].values())
    assert results["ratio"] > 0 and results["cpu_ratio"] > 0
    assert 0 <= results["flags_agree"] <= 4
    x, y = module.synthetic_cifar(8, 0, split=1)
    assert x.shape == (8, 3, 32, 32) and 0 <= x.min() and x.max() <= 1 and y.shape == (8,)
    assert torch.equal(module.synthetic_cifar(8, 0, split=1)[0], x)
