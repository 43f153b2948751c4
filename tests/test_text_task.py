"""text_classification task, data loading, resource settings and import isolation (no TextAttack
in this process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from text_fixtures import write_data, write_model, write_resources

from samat import create_attack, create_task
from samat.errors import MissingDataError, SamatError
from samat.probe import check_attacks
from samat.recipe import load_recipe


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text")
    return {"model": write_model(root / "model"), **write_data(root / "data"),
            **write_resources(root / "resources")}


def _task(fixtures: dict[str, Path], fmt: str = "csv", **params):
    return create_task("text_classification", model=str(fixtures["model"]), dataset="files",
                       train_file=str(fixtures[f"train_{fmt}"]),
                       eval_file=str(fixtures[f"eval_{fmt}"]), max_length=16, download=False,
                       **params)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_task_reads_files_and_model_returns_logits(fixtures: dict[str, Path], fmt: str) -> None:
    task = _task(fixtures, fmt, n_train=50, n_eval=10)
    assert len(task.train_dataset()) == 50 and len(task.eval_dataset()) == 10
    x, y = task.collate_fn([task.eval_dataset()[i] for i in range(4)])
    assert x["input_ids"].shape[0] == 4 and x["input_ids"].shape[1] <= 16
    assert len(x["text"]) == 4 and y.dtype == torch.int64
    logits = task.build_model()(x)
    assert logits.shape == (4, 2)
    assert task.evaluate(task.build_model(), [(x, y)])["n_examples"] == 4
    described = task.describe()
    assert described["n_train"] == 50 and described["sources"]["eval"].endswith(fmt)
    assert task.input_bounds is None and task.higher_is_better


def test_task_parameter_errors(fixtures: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SamatError, match="task.model=.*nowhere.*embedded-minilm"):
        _task({**fixtures, "model": tmp_path / "nowhere"})
    with pytest.raises(MissingDataError, match="no such file"):
        _task({**fixtures, "train_csv": tmp_path / "missing.csv"})
    with pytest.raises(SamatError, match="Unknown dataset"):
        create_task("text_classification", dataset="imdb")
    with pytest.raises(SamatError, match="train_file"):
        create_task("text_classification", dataset="files", train_file="a.csv")
    with pytest.raises(SamatError, match="outside 0..1"):
        bad = tmp_path / "bad.csv"
        bad.write_text("text,label\nfine,3\n")
        _task({**fixtures, "train_csv": bad})


def test_a_missing_relative_file_is_named_by_its_absolute_path(
        fixtures: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDataError, match=f"^{tmp_path}/data/missing.csv: no such file"):
        _task({**fixtures, "train_csv": "data/missing.csv"})


def test_tensor_attacks_are_refused(fixtures: dict[str, Path]) -> None:
    task = _task(fixtures, n_eval=4)
    model = task.build_model()
    batch = task.collate_fn(task.eval_examples)
    attack = create_attack("fgsm", model, task=task, eps=0.1, bounds=None)
    with pytest.raises(SamatError, match="pso and iga"):
        task.evaluate(model, [batch], attack)
    with pytest.raises(SamatError) as raised:  # and before training, by its check
        check_attacks([("eval.attacks.0", attack)], task, model, "text_classification")
    assert str(raised.value) == (
        "eval.attacks.0: fgsm perturbs float input tensors, but the task's inputs are dict "
        "(task text_classification, dataset files); choose an attack for this task (samat list "
        "attacks)")


def test_missing_resources_are_one_line_errors(fixtures: dict[str, Path], tmp_path: Path) -> None:
    task = _task(fixtures, n_eval=4)
    model = task.build_model()
    cases = [
        ("pso", {"hownet": str(tmp_path / "none.pkl")}, "hownet=.*no such file.*word_candidates"),
        ("iga", {"embedding": str(tmp_path)}, "embedding=.*missing paragram.npy.*fallback"),
        ("iga", {"stopwords": str(tmp_path)}, "stopwords=.*corpora/stopwords/english"),
    ]
    for name, params, message in cases:
        defaults = {"stopwords": "fallback", "hownet": "fallback", "pos_tagger": "fallback"}
        if name == "iga":
            defaults = {"stopwords": "fallback", "embedding": "fallback"}
        with pytest.raises(MissingDataError, match=message) as info:
            create_attack(name, model, task=task, cache_dir=str(tmp_path / "cache"),
                          **{**defaults, **params})
        assert "\n" not in str(info.value)
    with pytest.raises(SamatError, match="query_budget must be an integer >= 1"):
        create_attack("iga", model, task=task, query_budget=0, stopwords="fallback",
                      embedding="fallback")
    with pytest.raises(SamatError, match="Unknown key 'attack.hownet'"):
        create_attack("iga", model, task=task, hownet="fallback")


def test_fallback_resources_are_labelled(fixtures: dict[str, Path], tmp_path: Path) -> None:
    from samat_text.fallbacks import fallback_pos

    task = _task(fixtures, n_eval=4)
    attack = create_attack("pso", task.build_model(), task=task, stopwords="fallback",
                           hownet="fallback", pos_tagger="fallback",
                           cache_dir=str(tmp_path / "cache"))
    resources = attack.describe()["resources"]
    assert set(resources) == {"stopwords", "hownet", "pos_tagger"}
    assert all(value.startswith("fallback:") for value in resources.values())
    assert "the" in attack.stopwords and "movie" not in attack.stopwords
    assert [fallback_pos(w) for w in ("the", "quickly", "wonderful", "film", "walked")] == [
        "DET", "ADV", "ADJ", "NOUN", "VERB"]
    with pytest.raises(TypeError, match="raw texts"):
        attack(torch.zeros(1), torch.zeros(1))


def test_importing_samat_and_the_plugin_does_not_import_textattack() -> None:
    code = ("import sys, samat, samat_text.plugin, samat_text.task, samat_text.attacks; "
            "from samat.plugins import registries; registries(); "
            "print('textattack' in sys.modules, 'flair' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_text_recipes_load(root: Path) -> None:
    for path in ("rotten_tomatoes_sam.yaml", "rotten_tomatoes_st.yaml", "text_demo/sam.yaml",
                 "text_demo/st.yaml"):
        recipe = load_recipe(root / "recipes" / path)
        assert recipe.task.name == "text_classification"
        assert recipe.train.epochs == 3
        assert recipe.train.optimizer.name == "adamw"
        assert recipe.train.optimizer.params == {"lr": 5e-5}
        sam = recipe.train.weight_perturbation
        assert (sam.name, sam.params.get("rho")) == (
            ("sam", 0.05) if "sam" in path else ("none", None))
        assert [a.name for a in recipe.eval.attacks] == ["pso", "iga"]
