"""PSO and IGA end to end (in subprocesses: importing TextAttack has process-wide effects)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from text_fixtures import write_data, write_model

TESTS = Path(__file__).resolve().parent


def _check_arithmetic(r: dict) -> None:
    """TextAttack's fields against its counts: skipped examples are excluded from the ASR."""
    n, ok, failed, skipped = r["n_examples"], r["successful"], r["failed"], r["skipped"]
    assert ok + failed + skipped == n
    assert abs(r["attack_success_rate"] - 100 * ok / (ok + failed)) < 0.01
    assert abs(r["accuracy"] - 100 * failed / n) < 0.01
    assert abs(r["original_accuracy"] - 100 * (n - skipped) / n) < 0.01


def test_pso_and_iga_with_local_resources(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(TESTS / "text_fixtures.py"), str(tmp_path)], env=env,
                   check=True, capture_output=True, timeout=120)
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["natural"]["accuracy"] >= 90  # the tiny model did learn
    for name in ("pso", "iga"):
        result = r[name]
        _check_arithmetic(result)
        # the scenario holds one must-fail and one mislabelled (skipped) sentence
        assert result["failed"] >= 1 and result["skipped"] == 1 and result["successful"] >= 1
        assert result["avg_words_per_input"] > 0 and result["avg_queries"] > 0
        rows = list(csv.DictReader(open(tmp_path / f"{name}.csv")))
        assert len(rows) == 8
        assert sum(row["result_type"] == "successful" for row in rows) == result["successful"]
    assert r["pso_describe"]["resources"]["pos_tagger"].startswith("fallback:")
    assert r["pso_describe"]["resources"]["hownet"].endswith("word_candidates_sense.pkl")
    assert r["download_error"].startswith("embedding=download: download failed")
    # TextAttack unpickled only the HowNet bank samat wrote (the embedding was handed over)
    [bank] = map(Path, r["unpickled"])
    assert bank.parent == tmp_path / "cache" / "hownet" and bank.name.startswith("hownet_")
    assert r["stray"] == [] and r["env_changed"] == [] and r["textattack_imported"]
    assert list(home.rglob("*")) == []  # nothing written outside the cache and output paths


def test_samat_run_headline_recipe_on_fixtures(tmp_path: Path, run_cli, root: Path) -> None:
    model, data = write_model(tmp_path / "model"), write_data(tmp_path / "data")
    home = tmp_path / "home"
    home.mkdir()
    run_dir = tmp_path / "run"
    overrides = [
        f"task.model={model}", "task.dataset=files", f"task.train_file={data['train_csv']}",
        f"task.eval_file={data['eval_parquet']}", "task.max_length=16", "task.download=false",
        "device=cpu", f"output_dir={run_dir}", "train.optimizer.lr=3e-3", "eval.n_examples=8",
    ]
    for i, resources in enumerate(({"hownet": "fallback", "pos_tagger": "fallback"},
                                   {"embedding": "fallback"})):
        settings = {"n_examples": 4, "query_budget": 40, "pop_size": 4, "max_iters": 2,
                    "stopwords": "fallback", "cache_dir": tmp_path / "cache", **resources}
        overrides += [f"eval.attacks.{i}.{k}={v}" for k, v in settings.items()]
    out = run_cli("run", "recipes/rotten_tomatoes_sam.yaml", *overrides, cwd=root,
                  env={"HOME": str(home)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # TextAttack's log lines and its dependencies' warnings go to log.txt, not the console
    assert "textattack:" not in out.stderr and "Warning" not in out.stderr, out.stderr[-2000:]
    assert "textattack: Goal function" in (run_dir / "log.txt").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and metrics["natural"]["n_examples"] == 8
    assert metrics["training"]["weight_perturbation"]["rho"] == 0.05
    training = metrics["training"]
    assert training["optimizer"]["name"] == "adamw" and training["epochs"] == 3
    assert [a["label"] for a in metrics["attacks"]] == ["PSO", "IGA"]
    for attack, name in zip(metrics["attacks"], ("PSO", "IGA"), strict=True):
        _check_arithmetic(attack)
        assert attack["n_examples"] == 4 and attack["attack"]["query_budget"] == 40
        assert all(v.startswith("fallback:") for v in attack["attack"]["resources"].values())
        rows = list(csv.DictReader(open(run_dir / f"adversarial_{name}.csv")))
        assert len(rows) == 4 and attack["examples_csv"] == f"adversarial_{name}.csv"
    assert list(home.rglob("*")) == []
