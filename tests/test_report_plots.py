"""samat.report.plots: PNGs are written, curves need a real config key, matplotlib is optional,
file names come from the task's own parameters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from report_fixtures import CIFAR10, FGSM, make_run

from samat.errors import SamatError
from samat.report import add_reference_rows, build_tables, collect_runs
from samat.report.plots import check_request, curve, slug, table_slug, tradeoff, write_plots

PNG = b"\x89PNG\r\n\x1a\n"


def _runs(root: Path) -> list:
    for seed in (0, 1):
        make_run(root / f"sgd{seed}", seed=seed, natural=94 + seed, attacks={"F": (FGSM, 60)})
        for rho in (0.1, 0.2):
            make_run(root / f"sam{rho}_{seed}", seed=seed, natural=95, attacks={"F": (FGSM, 70)},
                     weight={"name": "sam", "rho": rho})
    return collect_runs([root])


def test_tradeoff_and_curve_pngs(tmp_path: Path) -> None:
    runs = _runs(tmp_path / "runs")
    tables = build_tables(runs)
    add_reference_rows(tables)  # hollow paper markers are drawn too
    (table,) = tables
    assert any(r.reference for r in table.rows)
    path = tradeoff(table, tmp_path / "t.png")
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
    path = curve(table, "train.weight_perturbation.rho", tmp_path / "c.png")
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
    written = write_plots(runs, [table], tmp_path, ["train.weight_perturbation.rho"])
    assert sorted(p.name for p in written) == [
        "curve_train.weight_perturbation.rho_image_classification_cifar10_preactresnet18.png",
        "tradeoff_image_classification_cifar10_preactresnet18.png"]


def test_bad_requests_fail_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = build_tables(_runs(tmp_path / "runs"))
    with pytest.raises(SamatError, match="--curve train.rho: no run has this config key"):
        check_request(tables, ["train.rho"])
    check_request(tables, ["train.weight_perturbation.rho"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SamatError, match=r"pip install 'samat\[report\]'"):
        check_request(tables, [])


def test_slug() -> None:
    assert slug("segmentation (dataset=voc2012, encoder=mobilenet_v2)") == \
        "segmentation_voc2012_mobilenet_v2"
    assert slug("curve/a b") == "curve_a_b" and slug("???") == "table"


def test_table_slug_names_the_task_by_its_short_string_parameters(tmp_path: Path) -> None:
    task = {**CIFAR10, "root": "/data/cifar", "download": True, "width": 10,
            "notes": "a long free-text description of this particular experiment"}
    make_run(tmp_path / "a", natural=90, attacks={}, task=task)
    make_run(tmp_path / "b", natural=90, attacks={},
             task={"name": "no_such_task", "root": "imgs", "path": "/srv/x", "size": "small"})
    slugs = sorted(table_slug(t) for t in build_tables(collect_runs([tmp_path])))
    # environment (root, download), numbers, paths and long text are left out; an undeclared
    # task has no environment, so its short root stays
    assert slugs == ["image_classification_cifar10_preactresnet18", "no_such_task_imgs_small"]
