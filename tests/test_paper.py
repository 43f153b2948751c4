"""samat.paper: the paper's numbers as data, matched to a report's rows and columns."""

from __future__ import annotations

from pathlib import Path

from report_fixtures import CIFAR10, FGSM, PGD_L2, PGD_LINF, make_run

from samat.paper import add_paper_rows, method_matches, paper_tables
from samat.report import AVERAGE, NATURAL, build_tables, collect_runs, render

SAM = {"name": "sam", "rho": 0.1, "adaptive": False}
CIFAR_COLUMNS = {
    "FGSM": FGSM, "PGD-linf": PGD_LINF, "PGD-l2": PGD_L2,
    "AA": {"name": "autoattack", "norm": "l2", "eps": 32 / 255, "version": "standard"},
    "StAdv": {"name": "stadv"}, "FAB": {"name": "fab", "norm": "l2", "eps": 32 / 255},
    "Pixle": {"name": "pixle", "max_iterations": 5},
}


def test_every_table_is_well_formed() -> None:
    tables = paper_tables()
    assert {t["ref"] for t in tables} == {f"Table {i}" for i in range(2, 11)}
    for table in tables:
        assert table["order"][0] == NATURAL
        for row in table["rows"]:
            assert len(row["values"]) == len(table["order"]), (table["ref"], row["label"])
            assert all(0 <= v <= 100 for v in row["values"])
    table2 = next(t for t in tables if t["ref"] == "Table 2")
    sam02 = next(r for r in table2["rows"] if r["label"] == "SAM ρ=0.2")
    assert sam02["values"] == [95.5, 66.7, 51.3, 53.4, 48.1, 44.2, 53.4, 13.2, 47.2]
    assert table2["columns"]["FGSM"]["eps"] == 1 / 255  # fractions are numbers


def test_method_matching() -> None:
    sam = {"train": {"weight_perturbation": SAM, "input_perturbation": {"name": "none"}}}
    assert method_matches(sam, {"weight": {"name": "sam", "rho": 0.1}})
    assert not method_matches(sam, {"weight": {"name": "sam", "rho": 0.2}})
    assert not method_matches(sam, {"optimizer": "sgd"})  # SGD means no perturbation
    at = {"train": {"input_perturbation": {"name": "pgd", "norm": "linf", "eps": 8 / 255}}}
    assert method_matches(at, {"input": {"name": "pgd", "norm": "linf", "eps": 8 / 255}})
    assert not method_matches(at, {"input": {"name": "pgd", "norm": "l2"}})
    adam = {"train": {"optimizer": {"name": "adam"}}}
    assert method_matches(adam, {"optimizer": "adam"})
    assert not method_matches(adam, {"optimizer": "sgd"})


def test_paper_row_beside_the_matching_user_row(tmp_path: Path) -> None:
    make_run(tmp_path / "sam", natural=95.0, weight=SAM,
             attacks={"FGSM": (FGSM, 60.0), "PGD-linf": (PGD_LINF, 45.0)})
    make_run(tmp_path / "sgd", natural=94.0, attacks={"FGSM": (FGSM, 60.0)})
    (table,) = build_tables(collect_runs([tmp_path]))
    add_paper_rows(table)
    labels = [r.label for r in table.rows]
    assert labels == ["SGD", "↳ paper: SGD", "SAM ρ=0.1", "↳ paper: SAM ρ=0.1"]
    paper_sam = table.rows[3]
    assert paper_sam.reference == "Table 2"
    assert paper_sam.values == {NATURAL: [95.4], "FGSM": [63.3], "PGD-linf": [46.2]}
    assert AVERAGE not in paper_sam.values  # the paper averages columns this table lacks
    markdown = render([table], "markdown")
    assert "| ↳ paper: SAM ρ=0.1 | 95.4 | 63.3 | 46.2 | — | Table 2 |" in markdown
    assert any("quote the paper" in n for n in table.notes)


def test_full_columns_bring_the_paper_average(tmp_path: Path) -> None:
    make_run(tmp_path / "sam", natural=95.0, weight={**SAM, "rho": 0.4},
             attacks={k: (v, 50.0) for k, v in CIFAR_COLUMNS.items()})
    (table,) = build_tables(collect_runs([tmp_path]))
    add_paper_rows(table)
    paper = table.rows[1]
    assert paper.values[AVERAGE] == [51.9] and paper.values["Pixle"] == [14.3]


def test_no_match_is_said(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={"FGSM": (FGSM, 50)},
             task={**CIFAR10, "dataset": "digits", "model": "small_cnn"})
    (table,) = build_tables(collect_runs([tmp_path]))
    add_paper_rows(table)
    assert [r.label for r in table.rows] == ["SGD"]
    assert table.notes[-1] == "--against paper: no paper row has this task and method"


def test_text_rows_need_the_attack_success_rate(tmp_path: Path) -> None:
    task = {"name": "text_classification", "dataset": "rotten_tomatoes", "model": "x"}
    make_run(tmp_path / "sam", task=task, natural=85, weight={"name": "sam", "rho": 0.05},
             optimizer={"name": "adamw"}, attacks={"PSO": ({"name": "pso"}, 17.5)},
             attack_metric="attack_success_rate")
    (table,) = build_tables(collect_runs([tmp_path]), "attack_success_rate")
    add_paper_rows(table)
    assert table.rows[1].values == {NATURAL: [84.6], "PSO": [17.1]}
    (accuracy_table,) = build_tables(collect_runs([tmp_path]))
    add_paper_rows(accuracy_table)
    assert len(accuracy_table.rows) == 1  # the paper reports ASR, not accuracy under attack
