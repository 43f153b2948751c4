"""Shipped recipes by name, and the wheel that ships them (``samat/recipes``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from samat.packaged import name_of, packaged_recipe, recipe_names, recipes_root

ROOT = Path(__file__).resolve().parents[1]


def test_names_resolve_to_the_recipe_files() -> None:
    assert recipes_root() == (ROOT / "recipes").resolve()
    sam = (ROOT / "recipes" / "cifar10" / "sam.yaml").resolve()
    for text in ("cifar10/sam", "cifar10/sam.yaml", "recipes/cifar10/sam.yaml", "./cifar10/sam"):
        assert name_of(text) == "cifar10/sam"
        assert packaged_recipe(text) == sam
    assert packaged_recipe("cifar10/nope") is None
    assert packaged_recipe("../pyproject.toml") is None and packaged_recipe("/etc/passwd") is None


def test_fragments_are_not_recipes() -> None:
    assert "cifar10/sam" in recipe_names() and "quickstart" in recipe_names()
    assert not [n for n in recipe_names() if "/_" in f"/{n}"]
    assert packaged_recipe("_shared/paper_training") is None  # not runnable alone
    assert packaged_recipe("_shared/paper_training", fragments=True).is_file()  # extendable


def test_the_wheel_ships_every_recipe_and_fragment(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for part in ("core", "plugins", "recipes"):
        shutil.copytree(ROOT / part, source / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")], check=True,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("samat-*.whl")
    shipped = {n.removeprefix("samat/recipes/") for n in zipfile.ZipFile(wheel).namelist()
               if n.startswith("samat/recipes/")}
    files = {p.relative_to(ROOT / "recipes").as_posix() for p in (ROOT / "recipes").rglob("*")
             if p.is_file()}
    assert shipped == files and "_shared/paper_training.yaml" in shipped
