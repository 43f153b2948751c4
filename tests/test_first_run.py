"""`make run`, the first run: recipes/digits/first_run.yaml (SGD vs SAM vs AT on digits, one seed)
is the digits comparison's own points, and the Makefile's commands, shortened, end with the
table, the clean-vs-robust plot and the way to the exact-theory toy."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from samat.sweep import load_sweep, point_recipe

ROOT = Path(__file__).resolve().parents[1]
FIRST_RUN = ROOT / "recipes" / "digits" / "first_run.yaml"
SHORT = "train.epochs=1 eval.n_examples=8"
FAKE_BIN = "/make-test/bin"


def _resolved(recipe: Path, point: str, seed: int = 0) -> dict:
    sweep = load_sweep(recipe, build=False)
    (p,) = [p for p in sweep.points if p.name == point or p.name == f"{point}/seed={seed}"]
    settings = point_recipe(sweep, p, Path("out")).as_dict()
    return {k: v for k, v in settings.items() if k not in ("name", "description", "output_dir")}


def test_first_run_is_the_digits_comparison_at_one_seed() -> None:
    sweep = load_sweep(FIRST_RUN, build=False)  # test_recipes.py builds it
    assert [p.name for p in sweep.points] == ["sgd", "sam", "at_linf"]
    compare = ROOT / "recipes" / "digits" / "compare.yaml"
    for ours, theirs in (("sgd", "sgd"), ("sam", "sam_rho0.2"), ("at_linf", "at_linf")):
        assert _resolved(FIRST_RUN, ours) == _resolved(compare, theirs), ours


def _make_run_commands() -> list[str]:
    """The commands `make run` runs, as make prints them (nothing is executed or installed)."""
    out = subprocess.run(["make", "-s", "-n", "-o", ".venv/.run", "run", f"BIN={FAKE_BIN}"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_ends_with_table_plot_and_toy(tmp_path: Path) -> None:
    commands = _make_run_commands()
    assert "recipes/digits/first_run.yaml" in commands[0] and "sweep" in commands[0]
    samat = f"{shlex.quote(sys.executable)} -m samat"
    script = "\n".join(c.replace(f"{FAKE_BIN}/samat", samat) for c in commands)
    script = script.replace("first_run.yaml ", f"first_run.yaml {SHORT} ", 1)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "[3/3] at_linf: finished" in proc.stderr  # progress, point by point
    lines = proc.stdout.splitlines()
    rows = [line.split()[0] for line in lines if line.startswith(("SGD", "SAM", "AT"))]
    assert rows == ["SGD", "SAM", "AT"]
    plot = lines[-2].removeprefix("clean vs robust plot: ")
    assert plot.endswith(".png") and (tmp_path / plot).stat().st_size > 0
    assert lines[-1].endswith("make toy")
    assert not (tmp_path / "runs" / "quickstart").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_toy_is_the_quickstart_sweep() -> None:
    out = subprocess.run(["make", "-s", "-n", "-o", ".venv/.core", "toy", f"BIN={FAKE_BIN}"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert f"{FAKE_BIN}/samat sweep recipes/quickstart.yaml" in out
    assert "--extra w_r" in out
