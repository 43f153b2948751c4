"""The quickstart recipe end to end: SAM on the toy model, the exact theory beside it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

QUICK = ["train.epochs=2", "task.n_train=512", "task.n_test=512"]


def test_quickstart_end_to_end(tmp_path: Path, root: Path, run_cli) -> None:
    proc = run_cli("run", str(root / "recipes" / "quickstart.yaml"), *QUICK, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "natural" in proc.stdout and "average over attacks" in proc.stdout
    assert "theory:" in proc.stdout
    (run_dir,) = (tmp_path / "runs" / "quickstart").iterdir()
    assert f"run directory: runs/quickstart/{run_dir.name}" in proc.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and metrics["natural"]["n_examples"] == 512
    assert 80 < metrics["natural"]["accuracy"] <= 100
    pgd = metrics["attacks"][1]
    assert pgd["attack"] == {"name": "pgd", "norm": "linf", "eps": 0.1, "alpha": 0.025,
                             "steps": 10, "random_start": False, "restarts": 1,
                             "bounds": None, "mask": "custom"}
    assert pgd["accuracy"] <= metrics["natural"]["accuracy"] and pgd["n_examples"] == 512
    assert metrics["training"]["weight_perturbation"] == {"name": "sam", "rho": 0.1,
                                                          "adaptive": False}
    assert metrics["training"]["mean_step_time_s"] > 0
    assert metrics["versions"]["torch"] and "toy" in metrics["versions"]["plugins"]
    assert metrics["seed"] == 0 and metrics["task"]["params"]["seed"] == 0
    assert set(metrics["report"]) >= {"w_r", "theory"}
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["train"]["epochs"] == 2 and config["task"]["n_train"] == 512
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 2
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert "natural accuracy" in (run_dir / "log.txt").read_text()
