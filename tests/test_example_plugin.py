"""Third-party plugins end to end: the example plugin installed for real, and a broken one.

Nothing touches the venv: the example is pip-installed with ``--target`` into a temporary
directory, and a broken plugin is a hand-written ``*.dist-info`` (how entry points are
discovered) in another; subprocesses see them through ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "samat-example-plugin"
BUILTIN = ("core", "toy")  # samat's own plugins, always installed with it
BROKEN_MESSAGE = "samat_broken_example needs the package 'frobnicate'"
TIMEOUT = 300


def _env(paths: list[Path], **extra: str) -> dict[str, str]:
    """The current environment with ``paths`` prepended to PYTHONPATH and no plugin blocked."""
    env = {k: v for k, v in os.environ.items() if k != "SAMAT_DISABLE_PLUGINS"}
    existing = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), *existing])
    env.update(extra)
    return env


def _samat(
    *args: str, paths: list[Path], cwd: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``python -m samat *args`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "samat", *args], env=_env(paths, **extra), cwd=cwd,
        capture_output=True, text=True, timeout=TIMEOUT,
    )


def _plugins(paths: list[Path], cwd: Path, **extra: str) -> dict[str, dict[str, Any]]:
    """``samat plugins --json`` as ``{name: info}``."""
    proc = _samat("plugins", "--json", paths=paths, cwd=cwd, **extra)
    assert proc.returncode == 0, proc.stderr
    return {info["name"]: info for info in json.loads(proc.stdout)}


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin pip-installed (offline, no dependencies) into a temporary directory."""
    root = tmp_path_factory.mktemp("example")
    source = root / "src"  # a copy: building in place would leave build/ and egg-info behind
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--no-cache-dir", "--disable-pip-version-check", "-q",
         "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A distribution whose ``samat`` entry point raises ImportError when loaded."""
    site = tmp_path_factory.mktemp("broken") / "site"
    package = site / "samat_broken_example"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(f"raise ImportError({BROKEN_MESSAGE!r})\n")
    dist_info = site / "samat_broken_example-0.0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: samat-broken-example\nVersion: 0.0.1\n"
    )
    (dist_info / "entry_points.txt").write_text("[samat]\nbroken = samat_broken_example.plugin\n")
    return site


def test_example_plugin_is_discovered(example_site: Path, tmp_path: Path) -> None:
    infos = _plugins([example_site], tmp_path)
    example = infos["example"]
    assert example["version"] == "0.1.0"
    assert example["hooks"] == ["samat_register_tasks"]
    assert example["error"] is None and not example["disabled"]
    assert "samat-example-plugin" in example["source"]
    assert all(infos[name]["error"] is None for name in BUILTIN), infos

    listed = _samat("list", "tasks", paths=[example_site], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "example_blobs" in listed.stdout and "toy_duality" in listed.stdout

    # The entry-point module is import-light: listing plugins does not import torch.
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys, samat_example.plugin; print('torch' in sys.modules)"],
        env=_env([example_site]), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False"


def test_example_recipe_runs(example_site: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _samat(
        "run", str(EXAMPLE / "recipe.yaml"), f"output_dir={run_dir}", "eval.n_examples=512",
        paths=[example_site], cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"]["name"] == "example_blobs"
    assert metrics["training"]["weight_perturbation"]["name"] == "sam"
    assert metrics["versions"]["plugins"]["example"] == "0.1.0"
    natural = metrics["natural"]["accuracy"]
    assert metrics["natural"]["n_examples"] == 512
    assert natural > 90.0  # chance is 33 %
    attacks = {a["label"]: a["accuracy"] for a in metrics["attacks"]}
    assert set(attacks) == {"pgd-linf-0.05", "pgd-linf-0.1"}
    assert all(acc <= natural for acc in attacks.values()), (natural, attacks)
    assert attacks["pgd-linf-0.1"] < natural  # the larger ball does cost accuracy
    spec = json.loads((run_dir / "model.json").read_text())
    assert spec["task"] == "example_blobs" and spec["architecture"]["n_classes"] == 3
    probe = subprocess.run(  # a fresh process: the installed plugin's model_builder
        [sys.executable, "-c", "import samat, sys, torch; m = samat.load_model(sys.argv[1]); "
         "print(m(torch.full((1, 2), 0.5)).shape)", str(run_dir)],
        env=_env([example_site]), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.strip() == "torch.Size([1, 3])"


def test_broken_plugin_is_reported_and_rest_works(
    example_site: Path, broken_site: Path, tmp_path: Path
) -> None:
    paths = [example_site, broken_site]
    infos = _plugins(paths, tmp_path)
    broken = infos["broken"]
    assert broken["error"] == f"ImportError: {BROKEN_MESSAGE}"
    assert broken["version"] == "0.0.1"
    assert broken["hooks"] == [] and not broken["disabled"]
    assert all(infos[name]["error"] is None for name in (*BUILTIN, "example")), infos

    listed = _samat("list", "tasks", paths=paths, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "example_blobs" in listed.stdout and "toy_duality" in listed.stdout


def test_broken_plugin_can_be_disabled(broken_site: Path, tmp_path: Path) -> None:
    infos = _plugins([broken_site], tmp_path, SAMAT_DISABLE_PLUGINS="broken")
    assert infos["broken"]["disabled"] is True
    assert infos["broken"]["error"] is None
    assert infos["broken"]["hooks"] == []
    assert all(infos[name]["error"] is None for name in BUILTIN), infos
