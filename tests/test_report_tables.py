"""samat.report.tables: one table per task, one row per method, mean ± sample std over seeds."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from report_fixtures import (
    AT,
    CIFAR10,
    FGSM,
    PGD_L2,
    PGD_LINF,
    SAM,
    make_run,
    measure,
    three_seeds,
)

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


def test_measure_columns_follow_the_attacks(tmp_path: Path) -> None:
    for seed, (sharp, top) in enumerate([(0.012, 40.0), (0.014, 44.0)]):
        make_run(tmp_path / f"s{seed}", seed=seed, natural=90, attacks={"FGSM": (FGSM, 50)},
                 measures=[measure("sam_sharpness", sharp, seed=seed),  # the run seed
                           measure("hessian", top, key="top_eigenvalue", name="hessian",
                                   seed=seed, k=1, iterations=20)])
    make_run(tmp_path / "old", seed=2, natural=91, weight=SAM, attacks={"FGSM": (FGSM, 55)})
    (table,) = build_tables(collect_runs([tmp_path]), extras=["hessian.trace"])
    assert table.headers == [NATURAL, "FGSM", AVERAGE, "sam_sharpness", "hessian",
                             "hessian.trace"]
    sgd, sam = table.rows
    assert sgd.values["sam_sharpness"] == [0.012, 0.014]
    assert table.cell(sgd, "sam_sharpness", 1) == "0.013 ± 0.0014"  # 4 significant digits
    assert table.cell(sgd, "hessian.trace", 1) == "420 ± 28"
    assert table.cell(sam, "hessian", 1) == "—"  # a run from before measures
    assert table.unranked("hessian") and not table.unranked("FGSM")
    with pytest.raises(SamatError, match=r"--extra hessian\.nope: .* available: "
                                         r"hessian\.top_eigenvalue, hessian\.trace, "
                                         r"sam_sharpness\.loss"):
        build_tables(collect_runs([tmp_path]), extras=["hessian.nope"])


def test_same_measure_label_with_other_parameters_splits_the_column(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={}, measures=[measure("sharp", 0.1)])
    make_run(tmp_path / "b", seed=1, natural=90, attacks={},
             measures=[measure("sharp", 0.2, rho=0.1, norm="l2", steps=5)])
    (table,) = build_tables(collect_runs([tmp_path]))
    assert [m.name for m in table.measures] == ["sharp", "sharp #2"]
    assert table.rows[0].values == {NATURAL: [90, 90], "sharp": [0.1], "sharp #2": [0.2]}


def test_a_run_and_the_same_sweep_point_count_as_one_seed(tmp_path: Path) -> None:
    for seed in (0, 1, 2):
        make_run(tmp_path / "sweep" / "sgd" / f"seed={seed}", seed=seed, natural=90 + seed,
                 attacks={"FGSM": (FGSM, 50)}, finished_at=f"2026-11-30T10:0{seed}:00+0000")
    make_run(tmp_path / "x", seed=0, natural=90, attacks={"FGSM": (FGSM, 50)},
             finished_at="2026-11-30T11:00:00+0000")  # the same experiment, seed 0, later
    (table,) = build_tables(collect_runs([tmp_path / "x", tmp_path / "sweep"]))
    (row,) = table.rows
    assert row.seeds == [0, 1, 2] and row.values[NATURAL] == [90, 91, 92]
    assert tmp_path / "x" in [r.path for r in row.runs]  # the newer one is shown
    assert (f"{tmp_path / 'sweep' / 'sgd' / 'seed=0'} and {tmp_path / 'x'} are the same "
            f"experiment and seed (0); showing {tmp_path / 'x'} (finished last)") in table.notes
    make_run(tmp_path / "x", seed=0, natural=80, attacks={"FGSM": (FGSM, 50)},
             finished_at="2026-11-30T11:00:00+0000")  # same config and seed, other numbers
    (table,) = build_tables(collect_runs([tmp_path / "x", tmp_path / "sweep"]))
    assert table.rows[0].seeds == [0, 1, 2] and table.rows[0].values[NATURAL] == [80, 91, 92]
    assert any(n.endswith("(finished last); their results differ") for n in table.notes)


def test_an_attack_on_fewer_examples_says_so_and_compares_on_them(tmp_path: Path) -> None:
    task = {"name": "text_classification", "dataset": "demo"}
    make_run(tmp_path / "st", task=task, natural=70.0, optimizer={"name": "adamw"},
             attacks={"PSO": ({"name": "pso", "n_examples": 40}, 40.0)},
             attack_fields={"PSO": {"n_examples": 40, "original_accuracy": 40.0,
                                    "attack_success_rate": 0.0}})
    (table,) = build_tables(collect_runs([tmp_path]))
    assert table.n_examples == {NATURAL: [100], "PSO": [40]}
    assert [table.title_of(h) for h in table.headers] == [NATURAL, "PSO (n=40)", AVERAGE]
    assert ("PSO attacked 40 of the 100 examples of Natural; accuracy on those examples before "
            "the attack ('original_accuracy'): AdamW 40.0") in table.notes
    make_run(tmp_path / "st", task=task, natural=70.0, optimizer={"name": "adamw"},
             attacks={"PSO": ({"name": "pso"}, 40.0)})  # the whole evaluation set
    (table,) = build_tables(collect_runs([tmp_path]))
    assert table.title_of("PSO") == "PSO" and not any("attacked" in n for n in table.notes)


def test_runs_differing_only_in_their_loggers_share_a_row(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={})
    b = make_run(tmp_path / "b", seed=1, natural=92, attacks={})
    config = b / "config.yaml"
    config.write_text(config.read_text() + "logging: [tensorboard, {name: wandb, mode: offline}]\n")
    (table,) = build_tables(collect_runs([tmp_path]))
    assert [(r.label, r.seeds) for r in table.rows] == [("SGD", [0, 1])]
