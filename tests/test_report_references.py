"""samat.report.references: plugins' published numbers, matched to a report's rows and columns
(``samat report --against paper``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import CIFAR10, FGSM, PGD_L2, PGD_LINF, SAM, make_run, plugin_registered

from samat import hookimpl
from samat.report import (
    AVERAGE,
    NATURAL,
    add_reference_rows,
    build_tables,
    collect_runs,
    reference_tables,
    render,
    write_report,
)
from samat.report.references import MATCHED, UNMATCHED, method_matches, setting_differences

CIFAR_COLUMNS = {
    "FGSM": FGSM, "PGD-linf": PGD_LINF, "PGD-l2": PGD_L2,
    "AA": {"name": "autoattack", "norm": "l2", "eps": 32 / 255, "version": "standard"},
    "StAdv": {"name": "stadv"}, "FAB": {"name": "fab", "norm": "l2", "eps": 32 / 255},
    "Pixle": {"name": "pixle", "max_iterations": 5},
}


def test_the_plugins_supply_the_papers_tables() -> None:
    tables = reference_tables()
    assert {t["ref"] for t in tables} == {f"Table {i}" for i in range(2, 11)}
    plugin_of = {t["ref"]: t["plugin"] for t in tables}
    assert plugin_of["Table 2"] == "image" and plugin_of["Table 8"] == "segmentation"
    assert plugin_of["Table 10"] == "text"
    for table in tables:
        assert table["order"][0] == NATURAL
        assert "docs/paper.md" in table["note"]
        for row in table["rows"]:
            assert len(row["values"]) == len(table["order"]), (table["ref"], row["label"])
            assert all(0 <= v <= 100 for v in row["values"])
    table2 = next(t for t in tables if t["ref"] == "Table 2")
    sam02 = next(r for r in table2["rows"] if r["label"] == "SAM ρ=0.2")
    assert sam02["values"] == [95.5, 66.7, 51.3, 53.4, 48.1, 44.2, 53.4, 13.2, 47.2]
    assert table2["columns"]["FGSM"]["eps"] == 1 / 255  # fractions are numbers
    assert "AutoAttack" in table2["note"]


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
    tables = build_tables(collect_runs([tmp_path]))
    add_reference_rows(tables)
    (table,) = tables
    labels = [r.label for r in table.rows]
    assert labels == ["SGD", "↳ paper: SGD", "SAM ρ=0.1", "↳ paper: SAM ρ=0.1"]
    paper_sam = table.rows[3]
    assert paper_sam.reference == "Table 2"
    assert paper_sam.values == {NATURAL: [95.4], "FGSM": [63.3], "PGD-linf": [46.2]}
    assert AVERAGE not in paper_sam.values  # the paper averages columns this table lacks
    markdown = render([table], "markdown")
    assert "| ↳ paper: SAM ρ=0.1 | 95.4 | 63.3 | 46.2 | — | Table 2 |" in markdown
    assert table.notes[0] == MATCHED and "AutoAttack" in table.notes[1]
    assert len(table.notes) == 2  # Table 2 matched two rows: its note is said once
    make_run(tmp_path / "sam07", natural=90.0, weight={**SAM, "rho": 0.7},
             attacks={"FGSM": (FGSM, 60.0)})
    (table,) = build_tables(collect_runs([tmp_path]))
    add_reference_rows([table])
    assert table.notes[-1] == ("no paper row for SAM ρ=0.7: Table 2, Table 5 did not train "
                               "that method")


def test_full_columns_bring_the_paper_average(tmp_path: Path) -> None:
    make_run(tmp_path / "sam", natural=95.0, weight={**SAM, "rho": 0.4},
             attacks={k: (v, 50.0) for k, v in CIFAR_COLUMNS.items()})
    tables = build_tables(collect_runs([tmp_path]))
    add_reference_rows(tables)
    paper = tables[0].rows[1]
    assert paper.values[AVERAGE] == [51.9] and paper.values["Pixle"] == [14.3]


def test_no_match_is_said(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={"FGSM": (FGSM, 50)},
             task={**CIFAR10, "dataset": "digits", "model": "small_cnn"})
    tables = build_tables(collect_runs([tmp_path]))
    add_reference_rows(tables)
    assert [r.label for r in tables[0].rows] == ["SGD"]
    assert tables[0].notes == [UNMATCHED]


def test_text_rows_need_the_attack_success_rate(tmp_path: Path) -> None:
    task = {"name": "text_classification", "dataset": "rotten_tomatoes"}
    make_run(tmp_path / "sam", task=task, natural=85, weight={"name": "sam", "rho": 0.05},
             optimizer={"name": "adamw"}, attacks={"PSO": ({"name": "pso"}, 17.5)},
             attack_metric="attack_success_rate")
    tables = build_tables(collect_runs([tmp_path]), "attack_success_rate")
    add_reference_rows(tables)
    assert tables[0].rows[1].values == {NATURAL: [84.6], "PSO": [17.1]}
    accuracy_tables = build_tables(collect_runs([tmp_path]))
    add_reference_rows(accuracy_tables)
    assert len(accuracy_tables[0].rows) == 1  # the paper reports ASR, not accuracy under attack


class _TranslationReferences:
    """A third-party plugin's published numbers (one good table, one malformed)."""

    @hookimpl
    def samat_reference_results(self) -> list[dict[str, Any]]:
        good = {"ref": "WMT Table 1", "task": {"name": "translation", "pair": "de-en"},
                "metric": "accuracy", "columns": {"Noise": {"name": "fgsm", "eps": "1/255"}},
                "order": ["Natural", "Noise"], "note": "from the WMT paper, section 5",
                "rows": [{"method": {"optimizer": "sgd"}, "label": "baseline",
                          "values": [31.5, 12.25]}]}
        return [good, {**good, "ref": "broken", "rows": [{"label": "x", "values": [1.0]}]}]


def test_a_plugins_reference_table_appears_with_against_paper(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_run(tmp_path / "run", natural=30.0, attacks={"Noise": (FGSM, 10.0)},
             task={"name": "translation", "pair": "de-en", "corpus": "/data/wmt"})
    without = write_report([tmp_path], against="paper")
    assert "baseline" not in without and UNMATCHED in without
    with plugin_registered(_TranslationReferences(), "translation_refs"), \
            caplog.at_level(logging.WARNING, logger="samat"):
        text = write_report([tmp_path], against="paper")
    lines = text.splitlines()
    assert lines[4].split() == ["↳", "paper:", "baseline", "31.5", "12.2", "—", "WMT", "Table", "1"]
    assert lines[-1] == "from the WMT paper, section 5"
    assert MATCHED in " ".join(line.strip() for line in lines)  # wrapped at 100 columns
    assert "plugin 'translation_refs': reference table broken left out" in caplog.text


def test_only_the_papers_setting_is_compared(tmp_path: Path) -> None:
    make_run(tmp_path / "x", natural=80.0, weight=SAM, task={**CIFAR10, "width": 16},
             attacks={"FGSM": (FGSM, 50.0)})
    make_run(tmp_path / "full", natural=95.0, weight=SAM, task={**CIFAR10, "width": 64},
             attacks={"FGSM": (FGSM, 60.0)})
    narrow, full = sorted(build_tables(collect_runs([tmp_path])), key=lambda t: t.title)
    add_reference_rows([narrow, full])
    assert [r.label for r in full.rows] == ["SAM ρ=0.1", "↳ paper: SAM ρ=0.1"]  # 64 = paper's
    assert [r.label for r in narrow.rows] == ["SAM ρ=0.1"]
    assert (f"{tmp_path / 'x'}: not compared with Table 2, Table 5: width 16, the paper's is "
            "64") in narrow.notes
    assert UNMATCHED not in narrow.notes


def test_a_setting_left_unset_takes_the_tables_default() -> None:
    reference = {"setting": {"width": 64, "resize": 32, "n_train": None},
                 "defaults": {"width": 64}}
    assert setting_differences({"name": "t", "resize": 32}, reference) == []
    assert setting_differences({"name": "t", "n_train": 500}, reference) == [
        "resize unset, the paper's is 32", "n_train 500, the paper's is unset"]


def test_the_plugins_tables_say_the_papers_setting() -> None:
    tables = {(t["ref"], t["task"].get("model")): t for t in reference_tables()}
    assert tables[("Table 2", "preactresnet18")]["setting"]["width"] == 64
    assert tables[("Table 6", "wrn")]["setting"] == {"depth": 28, "width": 10, "n_train": None,
                                                     "augment": True}
    assert tables[("Table 7", "preactresnet18")]["setting"]["resize"] == 32
    table8 = tables[("Table 8", None)]
    assert setting_differences({"encoder": "resnet50", "encoder_depth": 3}, table8) == [
        "encoder_depth 3, the paper's is 5"]
    assert tables[("Table 10", None)]["setting"]["model"] == "distilbert-base-uncased"
