"""samat.report.tables: one table per task, one row per method, mean ± sample std over seeds."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from report_fixtures import AT, CIFAR10, FGSM, PGD_L2, PGD_LINF, SAM, make_run, three_seeds

from samat.errors import SamatError
from samat.report import AVERAGE, NATURAL, build_tables, collect_runs, mean_std
from samat.report.tables import cell


def test_mean_and_sample_std_over_seeds(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    (table,) = build_tables(collect_runs([tmp_path]))
    assert [r.label for r in table.rows] == ["SGD", "SAM ρ=0.1", "AT ℓ∞ ε=8/255"]
    sgd = table.rows[0]
    assert sgd.values[NATURAL] == [90, 92, 94]
    assert sgd.values[AVERAGE] == [40, 43.5, 44]  # per-run mean over attacks, then over seeds
    assert sgd.seeds == [0, 1, 2]
    assert table.cell(sgd, NATURAL, 1) == "92.0 ± 2.0"  # mean 92, sample std 2
    average = [40, 43.5, 44]
    assert table.cell(sgd, AVERAGE, 1) == \
        f"{statistics.fmean(average):.1f} ± {statistics.stdev(average):.1f}"
    assert table.cell(table.rows[2], NATURAL, 1) == "80.0"  # one seed: no std
    assert table.direction() == "accuracy, higher is better"


def test_statistics() -> None:
    assert mean_std([1.0, 3.0]) == (2.0, statistics.stdev([1.0, 3.0]))
    assert mean_std([5.0]) == (5.0, None)
    assert cell(None, 1) == "—" and cell([], 1) == "—"
    assert cell([0.0612, 0.0618], 1, significant=True) == "0.0615 ± 0.00042"


def test_missing_attack_cell_and_note(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={"FGSM": (FGSM, 50), "PGD": (PGD_LINF, 30)})
    make_run(tmp_path / "b", natural=95, weight=SAM, attacks={"FGSM": (FGSM, 60)})
    make_run(tmp_path / "c", seed=1, natural=96, weight=SAM,
             attacks={"FGSM": (FGSM, 62), "PGD": (PGD_LINF, 44)})
    make_run(tmp_path / "d", natural=80, inp=AT, attacks={"FGSM": (FGSM, 70)})
    (table,) = build_tables(collect_runs([tmp_path]))
    sam = next(r for r in table.rows if r.label.startswith("SAM"))
    assert sam.values["PGD"] == [44]
    assert sam.values[AVERAGE] == [60, 53]
    assert any("missing from some of their runs: SAM ρ=0.1" in n for n in table.notes)
    at_row = next(r for r in table.rows if r.label.startswith("AT"))
    assert table.cell(at_row, "PGD", 1) == "—"


def test_label_collisions_are_disambiguated(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={}, optimizer={"name": "sgd", "lr": 0.1})
    make_run(tmp_path / "b", natural=91, attacks={}, optimizer={"name": "sgd", "lr": 0.05})
    (table,) = build_tables(collect_runs([tmp_path]))
    assert sorted(r.label for r in table.rows) == ["SGD (lr=0.05)", "SGD (lr=0.1)"]


def test_same_label_different_attack_splits_the_column(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={"PGD": (PGD_LINF, 30)})
    make_run(tmp_path / "b", seed=1, natural=92, attacks={"PGD": (PGD_L2, 40)})
    (table,) = build_tables(collect_runs([tmp_path]))
    assert [c.name for c in table.columns] == ["PGD", "PGD #2"]
    assert table.rows[0].values["PGD"] == [30] and table.rows[0].values["PGD #2"] == [40]


def test_one_table_per_task(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={})
    make_run(tmp_path / "b", natural=60, attacks={},
             task={"name": "image_classification", "dataset": "cifar100",
                   "model": "preactresnet18"})
    titles = sorted(t.title for t in build_tables(collect_runs([tmp_path])))
    assert titles == ["image_classification (dataset=cifar10, model=preactresnet18)",
                      "image_classification (dataset=cifar100, model=preactresnet18)"]


def test_where_the_data_lives_does_not_split_rows(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={}, task={**CIFAR10, "root": "/data"})
    make_run(tmp_path / "b", seed=1, natural=92, attacks={},
             task={**CIFAR10, "root": "/elsewhere", "download": True})
    (table,) = build_tables(collect_runs([tmp_path]))
    assert [(r.label, r.seeds) for r in table.rows] == [("SGD", [0, 1])]
    assert table.task == {"name": "image_classification", "dataset": "cifar10",
                          "model": "preactresnet18"}


def test_attack_success_rate_is_lower_is_better(tmp_path: Path) -> None:
    task = {"name": "text_classification", "dataset": "rotten_tomatoes"}
    pso = {"name": "pso"}
    make_run(tmp_path / "st", task=task, natural=84, attacks={"PSO": (pso, 22.0)},
             attack_metric="attack_success_rate", optimizer={"name": "adamw"})
    make_run(tmp_path / "sam", task=task, natural=85, attacks={"PSO": (pso, 17.0)},
             attack_metric="attack_success_rate", weight=SAM, optimizer={"name": "adamw"})
    (table,) = build_tables(collect_runs([tmp_path]), "attack_success_rate")
    assert not table.higher_is_better
    assert table.direction() == ("Natural: accuracy, higher is better; attack columns and "
                                 "Average: attack success rate, lower is better")
    assert [r.values["PSO"] for r in table.rows] == [[22.0], [17.0]]


def test_extra_report_columns(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={"FGSM": (FGSM, 50)}, report={"w_r": 0.0612})
    make_run(tmp_path / "b", seed=1, natural=92, attacks={"FGSM": (FGSM, 52)},
             report={"w_r": 0.0618})
    (table,) = build_tables(collect_runs([tmp_path]), extras=["w_r"])
    assert table.headers == [NATURAL, "FGSM", AVERAGE, "w_r"]
    assert table.rows[0].values["w_r"] == [0.0612, 0.0618]
    assert table.cell(table.rows[0], "w_r", 1) == "0.0615 ± 0.00042"  # 4 significant digits
    with pytest.raises(SamatError, match=r"--extra w_x: no run reports .* available: w_r"):
        build_tables(collect_runs([tmp_path]), extras=["w_x"])


def test_runs_differing_only_in_their_loggers_share_a_row(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={})
    b = make_run(tmp_path / "b", seed=1, natural=92, attacks={})
    config = b / "config.yaml"
    config.write_text(config.read_text() + "logging: [tensorboard, {name: wandb, mode: offline}]\n")
    (table,) = build_tables(collect_runs([tmp_path]))
    assert [(r.label, r.seeds) for r in table.rows] == [("SGD", [0, 1])]
