"""Smoke test of benchmarks/step_cost.py: tiny settings, JSON structure only (no timing checks)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "step_cost.py"
METHODS = {"sgd", "2x_sgd", "sam", "asam", "fgsm_at", "pgd2_at"}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("step_cost", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_step_cost_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "step_cost.json"
    argv = ["--width", "4", "--batch-size", "8", "--steps", "2", "--rounds", "1",
            "--pgd-steps", "2", "--warmup", "1", "--device", "cpu", "--json", str(out)]
    returned = _load().main(argv)
    table = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results == json.loads(json.dumps(returned))

    assert set(results["methods"]) == METHODS
    for name in METHODS:
        assert name in table
        row = results["methods"][name]
        assert row["mean_s"] > 0 and row["median_s"] > 0
        assert math.isfinite(row["ratio_to_sgd"]) and row["ratio_to_sgd"] > 0
        assert row["ratio_min_to_sgd"] > 0
        assert len(results["per_round_s"][name]) == 1
    assert results["methods"]["sgd"]["ratio_to_sgd"] == 1.0
    assert results["methods"]["sam"]["target_ratio"] == pytest.approx(2.05)
    assert results["methods"]["pgd2_at"]["target_ratio"] == pytest.approx(1.05 * 3)
    assert results["methods"]["sam"]["pass"] in (True, False)
    assert results["methods"]["asam"]["pass"] is None
    assert results["sam_vs_2x_sgd"] > 0 and isinstance(results["all_pass"], bool)

    mem = results["sam_memory"]
    assert mem["saved_bytes"] == mem["param_bytes"] > 0  # exactly one copy of the weights
    assert mem["copies"] == pytest.approx(1.0) and mem["pass"] is True

    env = results["environment"]
    for key in ("torch", "threads", "device", "cpu_model"):
        assert env[key] not in (None, "")
    assert env["device"] == "cpu"
    assert results["config"]["pgd_steps"] == 2 and results["config"]["width"] == 4
