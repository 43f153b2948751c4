"""The image plugin's registration and its RobustBench output hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samat.plugins import registries
from samat_image import plugin

ROOT = Path(__file__).resolve().parents[1]


def metrics(version: str) -> dict:
    autoattack = {"name": "autoattack", "norm": "l2", "eps": 32 / 255, "version": version}
    return {
        "recipe": {"name": "cifar10_sam"},
        "task": {"name": "image_classification", "dataset": "cifar10",
                 "architecture": "preactresnet18", "model_options": {"width": 16},
                 "n_test": 10000},
        "natural": {"accuracy": 95.4321, "n_examples": 30},
        "attacks": [
            {"label": "pgd-linf-1/255", "attack": {"name": "pgd"}, "accuracy": 50.0,
             "n_examples": 30},
            {"label": "autoattack-l2", "attack": autoattack, "accuracy": 43.6049,
             "n_examples": 30},
        ],
    }


def test_robustbench_record_written_for_standard_autoattack(tmp_path: Path) -> None:
    """RobustBench's model-info fields, the exact architecture with its width, and a 30-image
    run says so."""
    plugin.samat_on_result(metrics=metrics("standard"), run_dir=str(tmp_path))
    (record,) = json.loads((tmp_path / "robustbench.json").read_text())
    samat = record.pop("samat")
    assert record == {
        "link": "", "name": "cifar10_sam (autoattack-l2)", "authors": "",
        "additional_data": False, "number_forward_passes": 1, "dataset": "cifar10", "venue": "",
        "architecture": "PreActResNet-18 (width 16)", "eps": "32/255", "clean_acc": "95.43",
        "reported": "", "autoattack_acc": "43.60",
        "footnote": "Evaluated by samat with standard AutoAttack on the first 30 of the 10000 "
                    "test examples, not the full test set.",
    }
    assert samat == {
        "threat_model": "L2", "n_examples": 30, "n_test": 10000, "full_test_set": False,
        "attack": {"name": "autoattack", "version": "standard", "norm": "l2", "eps": 32 / 255},
    }


def test_no_record_for_cheap_autoattack_or_other_tasks(tmp_path: Path) -> None:
    plugin.samat_on_result(metrics=metrics("cheap"), run_dir=str(tmp_path))
    other = metrics("standard")
    other["task"]["name"] = "toy_duality"
    plugin.samat_on_result(metrics=other, run_dir=str(tmp_path))
    assert not (tmp_path / "robustbench.json").exists()


def test_every_paper_attack_is_registered() -> None:
    names = set(registries().attacks.names())
    assert {"fgsm", "pgd", "autoattack", "apgd", "fab", "square", "pixle", "stadv"} <= names
    assert "image_classification" in registries().tasks


def test_robustbench_record_of_a_real_run(tmp_path: Path) -> None:
    """From a finished run's own metrics: the evaluated examples and the exact architecture.
    (ℓ∞ radius 1 fools every image in APGD-CE's first steps, so the run is quick.)"""
    pytest.importorskip("torchattacks")
    pytest.importorskip("sklearn")
    from samat.runner import run

    run_dir = tmp_path / "run"
    run(ROOT / "recipes/digits/sgd.yaml", [
        "task.width=4", "task.n_train=512", "train.epochs=3", "train.schedule={name: constant}",
        "eval.n_examples=6", "eval.batch_size=6", f"output_dir={run_dir}",
        "eval.attacks=[{name: autoattack, norm: linf, eps: 1.0, label: AA}]",
    ])
    (record,) = json.loads((run_dir / "robustbench.json").read_text())
    assert record["architecture"] == "SmallCNN (width 4)" and record["dataset"] == "digits"
    assert record["eps"] == "1" and record["autoattack_acc"] == "0.00"
    assert float(record["clean_acc"]) > 0  # so AutoAttack had images to break
    assert record["samat"]["n_examples"] == 6 and record["samat"]["full_test_set"] is False
    n_test = record["samat"]["n_test"]
    assert n_test > 6 and f"first 6 of the {n_test} test examples" in record["footnote"]
