"""samat.report.write and ``samat report``: the command end to end, and how what plugins
declare (metrics, perturbation labels, task environment) shapes the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from report_fixtures import FGSM, make_run, plugin_registered, three_seeds

from samat import Register, RegisterMetric, hookimpl
from samat.report import write_report


def test_cli_report(tmp_path: Path, run_cli, root: Path) -> None:
    three_seeds(tmp_path / "runs")
    done = run_cli("report", str(tmp_path / "runs"), "--format", "markdown", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "| SGD | 92.0 ± 2.0 |" in done.stdout
    out = tmp_path / "out"
    done = run_cli("report", str(tmp_path / "runs"), "--out", str(out), cwd=root)
    assert done.returncode == 0, done.stderr
    for name in ("report.txt", "report.md", "report.csv", "report.tex"):
        assert (out / name).stat().st_size > 0
        assert f"wrote {out / name}" in done.stdout
    assert (out / "report.txt").read_text() + "\n" + f"wrote {out / 'report.txt'}" in done.stdout
    assert list(out.glob("tradeoff_*.png"))
    bad = run_cli("report", str(tmp_path / "missing"), cwd=root)
    assert bad.returncode == 2 and bad.stderr.startswith("samat: error: report:")
    assert "Traceback" not in bad.stderr
    bad = run_cli("report", str(tmp_path / "runs"), "--out", str(tmp_path / "o2"),
                  "--curve", "train.nope", cwd=root)
    assert bad.returncode == 2 and "--curve train.nope" in bad.stderr
    assert not (tmp_path / "o2" / "report.md").exists()  # nothing half-written


def test_numeric_sweep_axes_become_curves(tmp_path: Path) -> None:
    for lr in (0.1, 0.05):
        make_run(tmp_path / f"lr{lr}", natural=90, attacks={"FGSM": (FGSM, 50)},
                 optimizer={"name": "sgd", "lr": lr})
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": {"train.optimizer.lr": [0.1, 0.05]}}))
    written = write_report([tmp_path], out=tmp_path / "out")
    assert "curve_train.optimizer.lr_image_classification_cifar10_preactresnet18.png" in written


def test_the_report_imports_no_training_code() -> None:
    code = "import json, sys, samat.report; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = set(json.loads(done.stdout))
    assert "samat.report.tables" in loaded
    assert loaded.isdisjoint({"samat.sweep", "samat.runner", "samat.train", "torch"}), loaded


class _TranslationPlugin:
    """A third-party plugin declaring a metric, perturbation labels and a task environment."""

    @hookimpl
    def samat_register_metrics(self, register: RegisterMetric) -> None:
        register("bleu", "BLEU", higher_is_better=True)
        register("ter", "TER", higher_is_better=False)

    @hookimpl
    def samat_register_tasks(self, register: Register) -> None:
        register("translation", "translation_plugin:Task", "toy translation",
                 environment=("corpus",))

    @hookimpl
    def samat_register_weight_perturbations(self, register: Register) -> None:
        register("gsam", "translation_plugin:GSAM", "surrogate-gap SAM", label="GSAM-2")

    @hookimpl
    def samat_register_input_perturbations(self, register: Register) -> None:
        register("wordswap", "translation_plugin:WordSwap", "word swaps", label="WS-AT")


def _translation_runs(root: Path) -> None:
    noise = {"name": "noise", "sigma": 0.1}
    for seed, corpus in enumerate(("/data/wmt", "/mnt/wmt")):  # the same data, moved
        task = {"name": "translation", "pair": "de-en", "corpus": corpus}
        make_run(root / f"gsam{seed}", seed=seed, task=task, metric="bleu", natural=30.0 + seed,
                 attacks={"Noise": (noise, 20.0 + seed)}, weight={"name": "gsam", "rho": 0.05})
        make_run(root / f"ws{seed}", seed=seed, task=task, metric="bleu", natural=28.0,
                 attacks={"Noise": (noise, 25.0)},
                 inp={"name": "wordswap", "norm": "l2", "eps": 2.0})
    for name in root.iterdir():  # the attacks also report the translation error rate
        metrics = json.loads((name / "metrics.json").read_text())
        metrics["attacks"][0]["ter"] = 60.0 if name.name.startswith("gsam") else 50.0
        (name / "metrics.json").write_text(json.dumps(metrics))


def _report(root: Path, **options: Any) -> list[str]:
    return write_report([root], **options).splitlines()


def test_what_a_plugin_declares_shapes_the_report(tmp_path: Path) -> None:
    _translation_runs(tmp_path)
    before = _report(tmp_path)
    assert before[0] == "translation (corpus=/data/wmt, pair=de-en) — bleu, higher is better"
    assert sum(line.startswith("translation (") for line in before) == 2  # a table per corpus
    assert "GSAM ρ=0.05" in before[3] and "WORDSWAP-AT ℓ2 ε=2" in before[4]  # default labels

    with plugin_registered(_TranslationPlugin(), "translation"):
        after = _report(tmp_path)
        ter = _report(tmp_path, attack_metric="ter", fmt="latex")
    assert after[0] == "translation (pair=de-en) — BLEU, higher is better"
    assert sum(line.startswith("translation (") for line in after) == 1  # corpus is environment
    assert after[3].split()[:3] == ["GSAM-2", "ρ=0.05", "30.5"] and after[3].endswith("2 (0, 1)")
    assert after[4].startswith("WS-AT ℓ2 ε=2 ")
    assert ter[2] == (r"\caption{translation (pair=de-en) (Natural: BLEU, higher is better; "
                      r"attack columns and Average: TER, lower is better); mean $\pm$ std over "
                      r"seeds.}")
    assert ter[8].startswith(r"WS-AT $\ell_2$ $\epsilon$=2 & 28.0 $\pm$ 0.0 & "
                             r"\textbf{50.0 $\pm$ 0.0}")  # the lowest TER is the best
