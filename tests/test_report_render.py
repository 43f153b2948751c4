"""samat.report.render: the text, Markdown, CSV and LaTeX forms of report tables."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from report_fixtures import FGSM, SAM, make_run, measure, three_seeds

from samat.errors import SamatError
from samat.report import NATURAL, build_tables, collect_runs, render


def test_text(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    text = render(build_tables(collect_runs([tmp_path])), "text")
    lines = text.splitlines()
    assert lines[0] == ("image_classification (dataset=cifar10, model=preactresnet18) — "
                        "accuracy, higher is better")
    assert lines[1].split() == ["method", "Natural", "FGSM", "PGD", "Average", "seeds"]
    assert lines[3].startswith("SGD ") and lines[3].endswith("3 (0, 1, 2)")
    assert "FGSM: fgsm (eps=1/255)" in lines
    assert lines[-1] == "samat commit(s): 0123456789"


def test_csv_has_raw_numbers(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    rows = list(csv.DictReader(io.StringIO(render(build_tables(collect_runs([tmp_path])),
                                                  "csv"))))
    sgd_nat = next(r for r in rows if r["method"] == "SGD" and r["column"] == NATURAL)
    assert float(sgd_nat["mean"]) == 92.0 and float(sgd_nat["std"]) == 2.0
    assert sgd_nat["n"] == "3" and sgd_nat["seeds"] == "0 1 2"
    at_pgd = next(r for r in rows if r["method"].startswith("AT") and r["column"] == "PGD")
    assert at_pgd["std"] == "" and at_pgd["metric"] == "accuracy"


def test_extras_in_csv(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={}, report={"w_r": 0.0612})
    rows = list(csv.DictReader(io.StringIO(
        render(build_tables(collect_runs([tmp_path]), extras=["w_r"]), "csv"))))
    assert next(r for r in rows if r["column"] == "w_r")["metric"] == "report.w_r"


def test_markdown_and_latex(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    tables = build_tables(collect_runs([tmp_path]))
    markdown = render(tables, "markdown")
    assert "| method | Natural | FGSM | PGD | Average | seeds |" in markdown
    assert "| SGD | 92.0 ± 2.0 |" in markdown
    assert "- PGD: pgd (norm=linf, eps=1/255, alpha=0.25/255, steps=10" in markdown
    assert "samat commit(s): 0123456789" in markdown
    latex = render(tables, "latex")
    assert r"\toprule" in latex and r"\bottomrule" in latex
    assert r"SAM $\rho$=0.1" in latex and r"AT $\ell_\infty$ $\epsilon$=8/255" in latex
    assert r"92.0 $\pm$ 2.0" in latex
    assert r"\textbf{95.5 $\pm$ 0.7}" in latex  # best natural accuracy is bold
    assert r"image\_classification" in latex


def test_latex_bolds_the_lowest_where_lower_is_better(tmp_path: Path) -> None:
    task = {"name": "text_classification", "dataset": "rotten_tomatoes"}
    for name, value, weight in (("st", 22.0, None), ("sam", 17.0, SAM)):
        make_run(tmp_path / name, task=task, natural=84, attacks={"PSO": ({"name": "pso"}, value)},
                 attack_metric="attack_success_rate", weight=weight, optimizer={"name": "adamw"})
    latex = render(build_tables(collect_runs([tmp_path]), "attack_success_rate"), "latex")
    assert r"\textbf{17.0}" in latex and r"\textbf{22.0}" not in latex


def test_unknown_format() -> None:
    with pytest.raises(SamatError, match="--format: expected one of text, markdown, csv, latex"):
        render([], "html")


def test_measure_columns_in_every_format(tmp_path: Path) -> None:
    for seed, sharp in enumerate((0.012, 0.014)):
        make_run(tmp_path / f"sgd{seed}", seed=seed, natural=90, attacks={"FGSM": (FGSM, 50)},
                 measures=[measure("sam_sharpness", sharp)])
    make_run(tmp_path / "sam", natural=95, weight=SAM, attacks={"FGSM": (FGSM, 60)},
             measures=[measure("sam_sharpness", 0.002)])
    tables = build_tables(collect_runs([tmp_path]))
    text = render(tables, "text").splitlines()
    assert text[0].endswith("accuracy, higher is better; measures: neither direction is better")
    assert text[1].split() == ["method", "Natural", "FGSM", "Average", "sam_sharpness", "seeds"]
    assert text[3].split()[-6:-2] == ["0.013", "±", "0.0014", "2"]
    assert ("sam_sharpness: measure sam_sharpness (rho=0.05, norm=l2, steps=5), "
            "value 'sharpness', on 512 examples") in " ".join(line.strip() for line in text)
    assert "| SGD | 90.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 0.013 ± 0.0014 | 2 (0, 1) |" in \
        render(tables, "markdown")
    latex = render(tables, "latex")
    assert r"& 0.013 $\pm$ 0.0014 \\" in latex and r"\textbf{0.002" not in latex  # unranked
    rows = list(csv.DictReader(io.StringIO(render(tables, "csv"))))
    sharp = next(r for r in rows if r["method"] == "SGD" and r["column"] == "sam_sharpness")
    assert sharp["metric"] == "measures.sam_sharpness.sharpness" and sharp["n"] == "2"
    assert float(sharp["mean"]) == pytest.approx(0.013)


def test_long_parameter_lines_are_wrapped(tmp_path: Path) -> None:
    attack = {"name": "pso", "textattack_recipe": "pso_zang_2020", "n_examples": 40,
              "query_budget": 1000, "resources": {f"resource_{i}": f"/cache/path/{i}/file.bin"
                                                  for i in range(12)}}
    make_run(tmp_path / "a", natural=70, attacks={"PSO": (attack, 40.0)})
    tables = build_tables(collect_runs([tmp_path]))
    text = render(tables, "text").splitlines()
    legend = text[text.index(next(line for line in text if line.startswith("PSO: pso"))):]
    assert len(legend) > 3 and max(map(len, legend)) <= 100
    assert legend[1].startswith("    ")  # continuation lines are indented
    markdown = render(tables, "markdown").splitlines()
    items = markdown[markdown.index("", 2) + 1:]
    assert max(map(len, items)) <= 100 and items[0].startswith("- PSO: pso")
    assert items[1].startswith("  ") and not items[1].startswith("  -")
