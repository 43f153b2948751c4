"""samat.report.scatter: a measure against the metric under an attack over the runs, one colour
per method, Spearman's rank correlation printed (``samat report --scatter``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from report_fixtures import AT, FGSM, SAM, make_run, measure
from scipy.stats import spearmanr

from samat.errors import SamatError
from samat.report import build_tables, collect_runs, write_report
from samat.report.scatter import axis_label, scatters

# (method, seed) -> sharpness, natural, FGSM accuracy
POINTS = {("sgd", 0): (0.30, 90, 40), ("sgd", 1): (0.25, 91, 44), ("sam", 0): (0.10, 93, 52),
          ("sam", 1): (0.12, 92, 55), ("at", 0): (0.20, 80, 70)}


def _sweep(root: Path) -> None:
    methods = {"sgd": {}, "sam": {"weight": SAM}, "at": {"inp": AT}}
    for (name, seed), (sharp, nat, fgsm) in POINTS.items():
        make_run(root / name / f"seed={seed}", seed=seed, natural=nat,
                 attacks={"FGSM": (FGSM, fgsm)}, measures=[measure("sam_sharpness", sharp)],
                 **methods[name])


def test_points_and_rank_correlation(tmp_path: Path) -> None:
    _sweep(tmp_path)
    tables = build_tables(collect_runs([tmp_path]))
    fgsm, natural = scatters(tables, [("sam_sharpness", "FGSM"), ("sam_sharpness", "natural")])
    assert sorted(fgsm.points) == sorted(
        [("SGD", 0.30, 40.0), ("SGD", 0.25, 44.0), ("SAM ρ=0.1", 0.10, 52.0),
         ("SAM ρ=0.1", 0.12, 55.0), ("AT ℓ∞ ε=8/255", 0.20, 70.0)])
    xs, ys = zip(*((x, y) for _, x, y in fgsm.points), strict=True)
    assert fgsm.spearman == pytest.approx(spearmanr(xs, ys).statistic)
    assert fgsm.spearman == pytest.approx(-0.6)
    assert natural.attack == "Natural" and len(natural.points) == 5
    assert fgsm.summary() == (
        f"scatter sam_sharpness vs FGSM in {tables[0].title}: Spearman rank correlation "
        f"-0.600 (p={fgsm.pvalue:.2g}), n=5 runs")
    assert axis_label(tables[0], "sam_sharpness") == \
        "sam_sharpness: sharpness (rho=0.05, norm=l2, steps=5, n_examples=512)"
    assert axis_label(tables[0], "FGSM") == "accuracy under FGSM (eps=1/255)"


def test_too_few_runs_leave_the_correlation_undefined(tmp_path: Path) -> None:
    make_run(tmp_path / "a", natural=90, attacks={"FGSM": (FGSM, 40)},
             measures=[measure("sam_sharpness", 0.3)])
    (one,) = scatters(build_tables(collect_runs([tmp_path])), [("sam_sharpness", "FGSM")])
    assert math.isnan(one.spearman) and "undefined" in one.summary() and "n=1 run" in one.summary()


def test_an_unknown_measure_or_attack_lists_the_available_ones(tmp_path: Path) -> None:
    _sweep(tmp_path)
    tables = build_tables(collect_runs([tmp_path]))
    for request in (("sharpness", "FGSM"), ("sam_sharpness", "PGD")):
        with pytest.raises(SamatError) as error:
            scatters(tables, [request])
        assert str(error.value) == (
            f"--scatter {request[0]} {request[1]}: no table has both; measures: sam_sharpness, "
            "sam_sharpness.loss, sam_sharpness.perturbed_loss, sam_sharpness.sharpness; "
            "attacks: natural, average, FGSM")


def test_printed_without_out_and_a_png_with_it(tmp_path: Path, run_cli, root: Path) -> None:
    _sweep(tmp_path / "runs")
    text = write_report([tmp_path / "runs"], scatter=[("sam_sharpness", "FGSM")])
    assert text.splitlines()[-1].startswith("scatter sam_sharpness vs FGSM in image_class")
    done = run_cli("report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                   "--scatter", "sam_sharpness", "FGSM", cwd=root)
    assert done.returncode == 0, done.stderr
    png = tmp_path / "out" / "scatter_sam_sharpness_FGSM_image_classification_cifar10_" \
                             "preactresnet18.png"
    assert f"wrote {png}" in done.stdout and png.read_bytes()[:4] == b"\x89PNG"
    assert "Spearman rank correlation -0.600" in done.stdout
    bad = run_cli("report", str(tmp_path / "runs"), "--out", str(tmp_path / "o2"),
                  "--scatter", "hessian", "FGSM", cwd=root)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "samat: error: --scatter hessian FGSM: no table has both; measures: sam_sharpness, "
        "sam_sharpness.loss, sam_sharpness.perturbed_loss, sam_sharpness.sharpness; attacks: "
        "natural, average, FGSM"]
    assert not (tmp_path / "o2").exists()  # nothing written


def test_the_correlation_goes_with_every_format_but_csv(tmp_path: Path) -> None:
    _sweep(tmp_path)
    request = [("sam_sharpness", "natural")]
    markdown = write_report([tmp_path], fmt="markdown", scatter=request).splitlines()
    assert markdown[-1].startswith("- scatter sam_sharpness vs Natural in ")
    assert write_report([tmp_path], fmt="latex", scatter=request).splitlines()[-1] \
        .startswith("% scatter sam_sharpness vs Natural")
    assert write_report([tmp_path], fmt="csv", scatter=request) == \
        write_report([tmp_path], fmt="csv")
    write_report([tmp_path], out=tmp_path / "out", scatter=request)
    assert "Spearman rank correlation" in (tmp_path / "out" / "report.txt").read_text()
