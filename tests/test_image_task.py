"""The image_classification task: options, records, every shipped recipe, an end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from image_fixtures import make_cifar10, make_cifar100, make_tinyimagenet

from samat.cli import main
from samat.recipe import compose_recipe
from samat.runner import run
from samat_image.task import ImageClassificationTask

ROOT = Path(__file__).resolve().parents[1]
PAPER_RECIPES = sorted(  # fragments (_*.yaml) are pieces of recipes, not recipes
    path for folder in ("cifar10", "cifar100", "tinyimagenet")
    for path in (ROOT / "recipes" / folder).glob("[!_]*.yaml")
)
DIGITS_RECIPES = sorted((ROOT / "recipes" / "digits").glob("[!_]*.yaml"))
SMALL_MODEL = {  # validate every recipe's components at a reduced model size (fast)
    "preactresnet18": ["task.width=4"],
    "wrn": ["task.width=1", "task.depth=10"],
    "deit_tiny": ["task.width=12", "task.depth=1"],
    "small_cnn": [],
}


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("image_data")
    make_cifar10(root)
    make_cifar100(root)
    make_tinyimagenet(root, per_class=1, n_val=200, n_classes=200)  # AutoAttack: n_classes 200
    return root


def test_digits_task_records_data_and_model():
    task = ImageClassificationTask(dataset="digits", model="small_cnn", width=4, seed=1)
    model = task.build_model()
    described = task.describe()
    assert described["dataset"] == "digits" and described["input_shape"] == [1, 16, 16]
    assert (described["n_train"], described["n_test"], described["num_classes"]) == (1437, 360, 10)
    assert described["augment"] is False and described["model_options"] == {"width": 4}
    report = task.report(model)
    assert report["architecture"] == "small_cnn"
    assert report["n_parameters"] == sum(p.numel() for p in model.parameters())
    assert task.input_bounds == (0.0, 1.0)


def test_n_train_is_a_seeded_subset():
    a, b, c = (ImageClassificationTask(dataset="digits", model="small_cnn", n_train=50, seed=s)
               for s in (0, 0, 1))
    assert len(a.train_dataset()) == 50 and a.describe()["n_train"] == 50
    assert a.train_dataset().indices == b.train_dataset().indices
    assert a.train_dataset().indices != c.train_dataset().indices


@pytest.mark.parametrize(("override", "message"), [
    ("task.model=resnet", "task: Unknown model 'resnet'"),
    ("task.dataset=cifar", "task: Unknown dataset 'cifar'. Did you mean: cifar10, cifar100?"),
    ("task.depth=3", "'depth' is not an option of model 'small_cnn' (options: width)"),
    ("task.resize=32", "resize applies to tinyimagenet and imagefolder, not digits"),
    ("task.width=0", "width must be an integer >= 1"),
    ("task.n_trian=5", "Unknown key 'task.n_trian'. Did you mean: n_train?"),
])
def test_bad_task_options_are_one_line_errors(capsys, override, message):
    code = main(["validate", str(ROOT / "recipes/digits/sgd.yaml"), override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_plugin_registers_the_task_and_the_attacks():
    from samat import plugins

    registries = plugins.registries()
    assert "image_classification" in registries.tasks
    for name in ("autoattack", "fab", "pixle", "square", "stadv", "apgd"):
        assert name in registries.attacks


def test_every_paper_table_has_recipes():
    names = {p.relative_to(ROOT / "recipes").as_posix() for p in PAPER_RECIPES}
    assert {"cifar10/sgd.yaml", "cifar10/adam.yaml", "cifar10/sam.yaml", "cifar10/asam.yaml",
            "cifar10/at_linf.yaml", "cifar10/at_l2.yaml", "cifar10/wrn_sam.yaml",
            "cifar10/deit_at_linf.yaml", "cifar100/at_linf_eps1.yaml", "cifar100/at_l2_eps64.yaml",
            "tinyimagenet/sam.yaml", "tinyimagenet/at_l2.yaml"} <= names
    for path in PAPER_RECIPES:
        text = path.read_text()
        assert text.startswith("# docs/paper.md Table "), path
        recipe = compose_recipe(path)[0]  # extends: resolved
        assert "Table" in recipe["description"], path
        assert recipe["train"]["epochs"] == 100 and recipe["train"]["batch_size"] == 128
        assert recipe["train"]["schedule"] == {"name": "step", "milestones": [75, 90],
                                               "gamma": 0.1}


@pytest.mark.parametrize("path", PAPER_RECIPES + DIGITS_RECIPES,
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_validates(capsys, fixture_root, path):
    recipe = compose_recipe(path)[0]
    overrides = [f"task.root={fixture_root}", *SMALL_MODEL[recipe["task"]["model"]]]
    code = main(["validate", str(path), *overrides])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "OK" in out


def test_cifar10_sam_recipe_end_to_end(tmp_path, fixture_root):
    run_dir = tmp_path / "run"
    metrics = run(ROOT / "recipes/cifar10/sam.yaml", [
        f"task.root={fixture_root}", "task.width=4", "train.epochs=1", "train.batch_size=8",
        "train.schedule={name: constant}", "eval.n_examples=4", "eval.batch_size=4",
        f"output_dir={run_dir}",
        "eval.attacks=[{name: fgsm, eps: 1/255, label: FGSM},"
        " {name: pgd, norm: l2, eps: 32/255, alpha: 8/255, steps: 2, label: PGD-l2},"
        " {name: pixle, max_iterations: 1, restarts: 1, label: Pixle}]",
    ])
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["task"]["dataset"] == "cifar10" and saved["task"]["n_train"] == 20
    assert saved["task"]["input_shape"] == [3, 32, 32] and saved["task"]["augment"] is True
    assert saved["task"]["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert saved["report"]["architecture"] == "preactresnet18"
    assert saved["report"]["model_options"] == {"width": 4}
    assert saved["natural"]["n_examples"] == 4
    assert [a["label"] for a in saved["attacks"]] == ["FGSM", "PGD-l2", "Pixle"]
    for attack in saved["attacks"]:
        assert attack["n_examples"] == 4 and 0.0 <= attack["accuracy"] <= 100.0
    assert saved["attacks"][1]["attack"]["eps"] == pytest.approx(32 / 255)
    assert saved["training"]["weight_perturbation"]["rho"] == 0.1
