"""samat.plots: PNGs are written, curves need a real config key, matplotlib is optional."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from report_fixtures import FGSM, make_run

from samat.errors import SamatError
from samat.paper import add_paper_rows
from samat.plots import check_request, curve, slug, tradeoff, write_plots
from samat.report import build_tables, collect_runs

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
    (table,) = build_tables(runs)
    add_paper_rows(table)  # hollow paper markers are drawn too
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
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SamatError, match=r"pip install 'samat\[report\]'"):
        check_request(tables, [])


def test_slug() -> None:
    assert slug("segmentation (dataset=voc2012, encoder=mobilenet_v2)") == \
        "segmentation_voc2012_mobilenet_v2"
