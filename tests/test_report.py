"""samat.report: collecting runs, grouping by method, mean ± std over seeds, rendering."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest
from report_fixtures import FGSM, PGD_L2, PGD_LINF, make_run

from samat.errors import SamatError
from samat.report import (
    AVERAGE,
    NATURAL,
    build_tables,
    collect_runs,
    format_eps,
    method_label,
    render,
    sweep_axes,
    write_report,
)

SAM = {"name": "sam", "rho": 0.1, "adaptive": False}
AT = {"name": "pgd", "norm": "linf", "eps": 8 / 255, "alpha": 2 / 255, "steps": 10}


def _three_seeds(root: Path) -> None:
    for seed, (nat, fgsm, pgd) in enumerate([(90, 50, 30), (92, 54, 33), (94, 58, 30)]):
        make_run(root / "sgd" / f"s{seed}", seed=seed, natural=nat,
                 attacks={"FGSM": (FGSM, fgsm), "PGD": (PGD_LINF, pgd)})
    for seed, (nat, fgsm, pgd) in enumerate([(95, 60, 40), (96, 62, 44)]):
        make_run(root / "sam" / f"s{seed}", seed=seed, natural=nat, weight=SAM,
                 attacks={"FGSM": (FGSM, fgsm), "PGD": (PGD_LINF, pgd)})
    make_run(root / "at" / "s0", natural=80, inp=AT,
             attacks={"FGSM": (FGSM, 78), "PGD": (PGD_LINF, 77)})


def test_mean_and_sample_std_over_seeds(tmp_path: Path) -> None:
    _three_seeds(tmp_path)
    (table,) = build_tables(collect_runs([tmp_path]))
    assert [r.label for r in table.rows] == ["SGD", "SAM ρ=0.1", "AT ℓ∞ ε=8/255"]
    sgd = table.rows[0]
    assert sgd.values[NATURAL] == [90, 92, 94]
    assert sgd.values[AVERAGE] == [40, 43.5, 44]  # per-run mean over attacks, then over seeds
    assert sgd.seeds == [0, 1, 2]
    text = render([table], "text")
    assert "92.0 ± 2.0" in text  # mean 92, sample std 2
    assert f"{statistics.fmean([40, 43.5, 44]):.1f} ± {statistics.stdev([40, 43.5, 44]):.1f}" \
        in text
    assert "80.0 " in text and "80.0 ±" not in text  # one seed: no std
    assert "accuracy, higher is better" in text


def test_missing_attack_cell_and_note(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={"FGSM": (FGSM, 50), "PGD": (PGD_LINF, 30)})
    make_run(tmp_path / "b", natural=95, weight=SAM, attacks={"FGSM": (FGSM, 60)})
    make_run(tmp_path / "c", seed=1, natural=96, weight=SAM,
             attacks={"FGSM": (FGSM, 62), "PGD": (PGD_LINF, 44)})
    (table,) = build_tables(collect_runs([tmp_path]))
    sam = next(r for r in table.rows if r.label.startswith("SAM"))
    assert sam.values["PGD"] == [44]
    assert sam.values[AVERAGE] == [60, 53]
    assert any("missing from some of their runs: SAM ρ=0.1" in n for n in table.notes)
    make_run(tmp_path / "d", natural=80, inp=AT, attacks={"FGSM": (FGSM, 70)})
    (table,) = build_tables(collect_runs([tmp_path]))
    at_row = next(r for r in table.rows if r.label.startswith("AT"))
    markdown = render([table], "markdown")
    line = next(row for row in markdown.splitlines() if row.startswith(f"| {at_row.label} |"))
    assert line.split(" | ")[3] == "—"  # the PGD cell


def test_csv_has_raw_numbers(tmp_path: Path) -> None:
    _three_seeds(tmp_path)
    rows = list(csv.DictReader(io.StringIO(render(build_tables(collect_runs([tmp_path])),
                                                  "csv"))))
    sgd_nat = next(r for r in rows if r["method"] == "SGD" and r["column"] == NATURAL)
    assert float(sgd_nat["mean"]) == 92.0 and float(sgd_nat["std"]) == 2.0
    assert sgd_nat["n"] == "3" and sgd_nat["seeds"] == "0 1 2"
    at_pgd = next(r for r in rows if r["method"].startswith("AT") and r["column"] == "PGD")
    assert at_pgd["std"] == "" and at_pgd["metric"] == "accuracy"


def test_markdown_and_latex(tmp_path: Path) -> None:
    _three_seeds(tmp_path)
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


def test_attack_success_rate_is_lower_is_better(tmp_path: Path) -> None:
    task = {"name": "text_classification", "dataset": "rotten_tomatoes"}
    pso = {"name": "pso"}
    make_run(tmp_path / "st", task=task, natural=84, attacks={"PSO": (pso, 22.0)},
             attack_metric="attack_success_rate", optimizer={"name": "adamw"})
    make_run(tmp_path / "sam", task=task, natural=85, attacks={"PSO": (pso, 17.0)},
             attack_metric="attack_success_rate", weight=SAM, optimizer={"name": "adamw"})
    (table,) = build_tables(collect_runs([tmp_path]), "attack_success_rate")
    assert "attack success rate, lower is better" in table.direction()
    assert [r.values["PSO"] for r in table.rows] == [[22.0], [17.0]]
    assert r"\textbf{17.0}" in render([table], "latex")  # lowest is best


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


def test_unfinished_runs_are_skipped_and_errors(tmp_path: Path) -> None:
    make_run(tmp_path / "done", natural=90, attacks={})
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.yaml").write_text("seed: 0\n")
    assert [r.path.name for r in collect_runs([tmp_path])] == ["done"]
    with pytest.raises(SamatError, match="does not exist"):
        collect_runs([tmp_path / "nope"])
    with pytest.raises(SamatError, match="no finished run"):
        write_report([tmp_path / "unfinished"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    with pytest.raises(SamatError, match="cannot read"):
        collect_runs([tmp_path / "bad"])


def test_labels_and_radii() -> None:
    assert format_eps(8 / 255) == "8/255" and format_eps(0.25 / 255) == "0.25/255"
    assert format_eps(1.0) == "1" and format_eps(0.1) == "0.1"
    assert method_label({"train": {"optimizer": {"name": "adam"}}}) == "Adam"
    both = {"train": {"weight_perturbation": SAM, "input_perturbation": AT}}
    assert method_label(both) == "SAM ρ=0.1 + AT ℓ∞ ε=8/255"
    looksam = {"train": {"weight_perturbation": {"name": "looksam", "rho": 0.1, "k": 5,
                                                 "alpha": 0.1}}}
    assert method_label(looksam) == "LookSAM ρ=0.1 k=5 α=0.1"
    zero = {"train": {"input_perturbation": {**AT, "eps": 0.0}}}
    assert method_label(zero) == "SGD"  # a zero-radius perturbation is no perturbation


def test_cli_report(tmp_path: Path, run_cli, root: Path) -> None:
    _three_seeds(tmp_path / "runs")
    done = run_cli("report", str(tmp_path / "runs"), "--format", "markdown", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "| SGD | 92.0 ± 2.0 |" in done.stdout
    out = tmp_path / "out"
    done = run_cli("report", str(tmp_path / "runs"), "--out", str(out), cwd=root)
    assert done.returncode == 0, done.stderr
    for name in ("report.txt", "report.md", "report.csv", "report.tex"):
        assert (out / name).stat().st_size > 0
    assert list(out.glob("tradeoff_*.png"))
    bad = run_cli("report", str(tmp_path / "missing"), cwd=root)
    assert bad.returncode == 2 and bad.stderr.startswith("samat: error: report:")
    assert "Traceback" not in bad.stderr
    bad = run_cli("report", str(tmp_path / "runs"), "--out", str(tmp_path / "o2"),
                  "--curve", "train.nope", cwd=root)
    assert bad.returncode == 2 and "--curve train.nope" in bad.stderr
    assert not (tmp_path / "o2" / "report.md").exists()  # nothing half-written


def test_extra_report_columns(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={"FGSM": (FGSM, 50)}, report={"w_r": 0.0612})
    make_run(tmp_path / "b", seed=1, natural=92, attacks={"FGSM": (FGSM, 52)},
             report={"w_r": 0.0618})
    (table,) = build_tables(collect_runs([tmp_path]), extras=["w_r"])
    assert table.headers[-1] == "w_r" and table.rows[0].values["w_r"] == [0.0612, 0.0618]
    assert "0.0615 ± 0.00042" in render([table], "text")  # 4 significant digits, not 1 decimal
    rows = list(csv.DictReader(io.StringIO(render([table], "csv"))))
    assert next(r for r in rows if r["column"] == "w_r")["metric"] == "report.w_r"
    with pytest.raises(SamatError, match=r"--extra w_x: no run reports .* available: w_r"):
        build_tables(collect_runs([tmp_path]), extras=["w_x"])


def test_numeric_sweep_axes_become_curves(tmp_path: Path) -> None:
    grid = {"seed": [0, 1], "train.optimizer.lr": [0.1, 0.05],
            "train.input_perturbation.eps": ["1/255", "2/255"], "task.model": ["a", "b"]}
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": grid}))
    assert sweep_axes([tmp_path]) == ["train.optimizer.lr", "train.input_perturbation.eps"]
    for lr in (0.1, 0.05):
        make_run(tmp_path / f"lr{lr}", natural=90, attacks={"FGSM": (FGSM, 50)},
                 optimizer={"name": "sgd", "lr": lr})
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": {"train.optimizer.lr": [0.1, 0.05]}}))
    written = write_report([tmp_path], out=tmp_path / "out")
    assert "curve_train.optimizer.lr_image_classification_cifar10_preactresnet18.png" in written
