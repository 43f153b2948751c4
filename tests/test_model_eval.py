"""``samat eval``: a run directory reproduces its own evaluation, weights files and library
models are evaluated with a recipe, a killed evaluation resumes to the same numbers, bad
sources are one-line errors that write nothing, and ``samat report`` shows evaluated models."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from image_fixtures import make_cifar10
from run_fixtures import kill_on_attack_call, without_wall_clock

from samat import testing
from samat.cli import main
from samat.errors import SamatError
from samat.model_eval import resolve_source, run_eval
from samat.report import build_tables, collect_runs
from samat.runner import run

pytestmark = pytest.mark.usefixtures("fixture_task")

RECIPE = {
    "name": "trained", "seed": 3, "device": "cpu",
    "task": {"name": "fixture", "n_train": 256, "n_test": 256},
    "train": {"epochs": 4, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 0.1}},
    "eval": {"batch_size": 32, "attacks": [
        {"name": "pgd", "norm": "linf", "eps": 0.2, "alpha": 0.05, "steps": 3},  # random start
        {"name": "fgsm", "eps": 0.1}]},
}
EVALUATED = ("natural", "attacks", "average_under_attack")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("trained")
    recipe = tmp / "trained.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    with testing.fixture_plugin():
        run(recipe, [f"output_dir={tmp / 'run'}"])
    return tmp / "run"


def _results(metrics: dict) -> dict:
    return without_wall_clock({k: metrics[k] for k in EVALUATED})


def test_a_run_directory_reproduces_its_own_evaluation(trained: Path, tmp_path: Path) -> None:
    out, metrics = run_eval(str(trained), output=str(tmp_path / "eval"))
    ours = json.loads((trained / "metrics.json").read_text())
    assert _results(metrics) == _results(ours)
    assert json.loads((out / "metrics.json").read_text())["natural"] == ours["natural"]
    assert metrics["evaluated"]["kind"] == "run" and metrics["evaluated"]["epoch"] == 4
    assert metrics["training"] == ours["training"]
    assert not (out / "eval_state").exists()  # removed once every pass is written


def test_an_eval_recipe_adds_attacks_and_measures_to_the_runs(trained: Path, tmp_path: Path
                                                               ) -> None:
    extra = tmp_path / "more.yaml"
    extra.write_text(yaml.safe_dump({"eval": {"add_attacks": [
        {"name": "pgd", "norm": "l2", "eps": 0.5, "alpha": 0.2, "steps": 3, "label": "l2"}],
        "add_measures": [{"name": "input_gradient_norm", "n_examples": 32},
                         {"name": "sam_sharpness", "rho": 0.05, "n_examples": 32}]}}))
    _, metrics = run_eval(str(trained), str(extra), output=str(tmp_path / "eval"))
    ours = json.loads((trained / "metrics.json").read_text())
    assert [a["label"] for a in metrics["attacks"]] == ["pgd-linf-0.2", "fgsm-0.1", "l2"]
    assert without_wall_clock(metrics["attacks"][:2]) == without_wall_clock(ours["attacks"])
    assert ours["measures"] == []
    gradient, sharpness = metrics["measures"]
    assert (gradient["label"], gradient["n_examples"]) == ("input_gradient_norm", 32)
    assert sharpness["measure"]["rho"] == 0.05 and sharpness["value"] > 0
    assert sharpness["values"]["perturbed_loss"] > sharpness["values"]["loss"]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_weights_file_with_a_recipe(trained: Path, tmp_path: Path, suffix: str,
                                      capsys: pytest.CaptureFixture) -> None:
    state = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)["model"]
    weights = tmp_path / f"model{suffix}"
    if suffix == ".pt":
        torch.save(state, weights)
    else:
        from safetensors.torch import save_file
        save_file(state, str(weights))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({k: v for k, v in RECIPE.items() if k != "train"}))
    _, metrics = run_eval(str(weights), str(recipe), output=str(tmp_path / "eval"))
    ours = json.loads((trained / "metrics.json").read_text())
    assert metrics["natural"] == ours["natural"]  # no RNG: the natural pass is exact
    assert metrics["evaluated"] == {**metrics["evaluated"], "kind": "weights",
                                    "file": str(weights)}
    assert metrics["training"] is None
    assert main(["eval", str(weights), str(recipe), "--output", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out  # the end table, with no training to describe
    assert f"evaluated=weights:{weights} seed=3" in out and "pgd-linf-0.2" in out


def test_an_eval_recipes_fragment_is_named_in_its_errors(trained: Path, tmp_path: Path
                                                         ) -> None:
    weights = tmp_path / "model.pt"
    torch.save(torch.load(trained / "checkpoints" / "last.pt", weights_only=True)["model"],
               weights)
    (tmp_path / "measures.yaml").write_text(
        "eval:\n  measures:\n    - {name: sam_sharpness, rho: -0.1}\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"extends": "measures.yaml", **{
        k: v for k, v in RECIPE.items() if k != "train"}}))
    with pytest.raises(SamatError) as info:
        run_eval(str(weights), str(recipe), output=str(tmp_path / "eval"))
    assert str(info.value).startswith(f"{tmp_path / 'measures.yaml'}:3: eval.measures.0")
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:resnet18"])
def test_a_library_model_built_offline_runs_the_attack_suite(tmp_path: Path,
                                                             source: str) -> None:
    pytest.importorskip("torchattacks")
    make_cifar10(tmp_path / "data", per_batch=2, n_test=6)
    recipe = tmp_path / "cifar.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "lib", "device": "cpu",
        "task": {"name": "image_classification", "dataset": "cifar10",
                 "root": str(tmp_path / "data"), "augment": False},
        "eval": {"batch_size": 3, "attacks": [
            {"name": "fgsm", "eps": "1/255"},
            {"name": "pgd", "norm": "l2", "eps": 0.1, "alpha": 0.05, "steps": 2}]}}))
    out, metrics = run_eval(source, str(recipe), output=str(tmp_path / "eval"))
    assert metrics["evaluated"]["kind"] == "library"
    assert metrics["task"]["architecture"] == source and metrics["natural"]["n_examples"] == 6
    assert [a["attack"]["name"] for a in metrics["attacks"]] == ["fgsm", "pgd"]
    assert yaml.safe_load((out / "config.yaml").read_text())["task"]["model"] == source
    assert f"{source}: freshly initialised weights (task.pretrained is not true)" in (
        out / "log.txt").read_text()  # said, not silent: the numbers are a random model's


def test_pretrained_weights_missing_offline_say_what_to_fetch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    make_cifar10(tmp_path / "data", per_batch=2, n_test=6)
    recipe = tmp_path / "cifar.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "lib", "device": "cpu",
        "task": {"name": "image_classification", "dataset": "cifar10",
                 "root": str(tmp_path / "data"), "pretrained": True}}))
    with pytest.raises(SamatError, match=r"^task.pretrained: the pretrained weights of "
                       r"timm:resnet18 are not in the local cache .*; fetch them with python -c"):
        run_eval("timm:resnet18", str(recipe), output=str(tmp_path / "eval"))
    assert not (tmp_path / "eval").exists()


def test_bad_sources_are_one_line_errors_that_write_nothing(trained: Path,
                                                            tmp_path: Path) -> None:
    cases = [
        (str(tmp_path / "nowhere"), None, "not found; give a run directory, a weights file"),
        (str(tmp_path), None, "a directory with neither config.yaml"),
        (str(trained / "checkpoints" / "last.pt"), None, "needs a RECIPE that names the task"),
    ]
    wrong = tmp_path / "wrong.pt"
    torch.save({"layer.weight": torch.zeros(2, 2)}, wrong)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({k: v for k, v in RECIPE.items() if k != "train"}))
    cases.append((str(wrong), str(recipe), "the weights do not fit the recipe's model"))
    code = tmp_path / "code.pt"
    code.write_bytes(b"\x80\x04cos\nsystem\n.")  # a pickle that would import os.system
    cases.append((str(code), str(recipe), "not a readable weights file"))
    evaluated, _ = run_eval(str(trained), output=str(tmp_path / "evaluated"))
    cases.append((str(evaluated), None, rf"^SOURCE {evaluated}: the output of samat eval, which "
                  rf"holds no weights; evaluate what it evaluated \(samat eval {trained} "))
    for source, given, message in cases:
        with pytest.raises(SamatError, match=message) as error:
            run_eval(source, given, output=str(tmp_path / "eval"))
        assert "\n" not in str(error.value)
    assert not (tmp_path / "eval").exists()
    assert resolve_source("timm:resnet18").kind == "library"


def test_an_eval_recipe_over_a_run_may_not_retrain(trained: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"train": {"epochs": 1}}))
    with pytest.raises(SamatError, match=r"train: an eval recipe over a run sets only"):
        run_eval(str(trained), str(other), output=str(tmp_path / "eval"))


KILL_ON_SECOND_BATCH = kill_on_attack_call(4)


def _eval(args: list[str], env: dict[str, str], script: str = "") -> subprocess.Popen:
    main = "import sys; from samat.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", f"{script}\n{main}", "eval", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_during_eval_then_resume_gives_the_same_numbers(
        trained: Path, tmp_path: Path, fixture_env: dict[str, str]) -> None:
    reference, _ = run_eval(str(trained), output=str(tmp_path / "reference"))
    out = tmp_path / "eval"
    killed = _eval([str(trained), "--output", str(out)], fixture_env, KILL_ON_SECOND_BATCH)
    assert killed.wait(timeout=120) == -signal.SIGKILL
    assert not (out / "metrics.json").exists() and (out / "eval_state" / "partial.pt").is_file()
    done = _eval([str(trained), "--output", str(out), "--resume"], fixture_env)
    stdout, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr
    resumed = re.search(r"pgd-linf-0.2: resuming at batch (\d+) \((\d+) of 256 examples done\)",
                        stderr)
    assert resumed and 2 <= int(resumed.group(1)) <= 4, stderr  # killed in its 4th batch
    assert int(resumed.group(2)) == 32 * (int(resumed.group(1)) - 1)
    assert "natural: kept from an earlier evaluation" in stderr
    assert "pgd-linf-0.2" in stdout and f"eval directory: {out}" in stdout
    ours = json.loads((out / "metrics.json").read_text())
    assert _results(ours) == _results(json.loads((reference / "metrics.json").read_text()))
    again = _eval([str(trained), "--output", str(out), "--resume"], fixture_env)
    assert again.wait(timeout=120) == 2
    assert again.stderr.read() == (f"samat: error: --resume: {out} is finished (see its "
                                   "metrics.json); start a new evaluation to evaluate again\n")


def test_report_shows_trained_and_evaluated_models(trained: Path, tmp_path: Path) -> None:
    out, _ = run_eval(str(trained), output=str(tmp_path / "eval"))
    labelled, _ = run_eval(str(trained), output=str(tmp_path / "labelled"), label="mine")
    (table,) = build_tables(collect_runs([trained, out, labelled]))
    assert [row.label for row in table.rows] == ["SGD", "SGD (samat eval)", "mine"]


def test_a_hugging_face_model_directory_with_a_text_recipe(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from text_fixtures import write_data, write_model

    from samat.factories import create_task

    model_dir, files = write_model(tmp_path / "model"), write_data(tmp_path / "data")
    task = {"name": "text_classification", "dataset": "files", "max_length": 16,
            "train_file": str(files["train_csv"]), "eval_file": str(files["eval_csv"])}
    recipe = tmp_path / "text.yaml"
    recipe.write_text(yaml.safe_dump({"name": "text", "device": "cpu", "task": task,
                                      "eval": {"batch_size": 8}}))
    assert resolve_source(str(model_dir)).kind == "huggingface"
    out, metrics = run_eval(str(model_dir), str(recipe), output=str(tmp_path / "eval"))
    direct = create_task(**{**task, "model": str(model_dir)})
    loader = [direct.collate_fn([direct.eval_dataset()[i] for i in range(len(
        direct.eval_dataset()))])]
    assert metrics["natural"] == direct.evaluate(direct.build_model(), loader)
    assert metrics["evaluated"]["kind"] == "huggingface" and metrics["attacks"] == []
    assert yaml.safe_load((out / "config.yaml").read_text())["task"]["model"] == str(model_dir)
