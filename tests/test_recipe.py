from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from samat.errors import SamatError
from samat.recipe import (
    Component,
    apply_override,
    compose_recipe,
    load_recipe,
    merge,
    merge_overrides,
    normalize,
    parse_number,
    recipe_from_dict,
)

BASE = {"task": {"name": "toy_duality", "n": 5}, "train": {"epochs": 2}}


def recipe(overrides: list[str] = (), **top) -> object:
    return recipe_from_dict({**BASE, **top}, overrides)


@pytest.mark.parametrize(
    ("text", "value"),
    [("8/255", 8 / 255), (" 1 / 255 ", 1 / 255), ("5e-4", 5e-4), ("0.1", 0.1), ("-2", -2.0)],
)
def test_numbers_and_fractions(text: str, value: float) -> None:
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["linf", "8/0", "a/255", "1/2/3", ""])
def test_non_numbers(text: str) -> None:
    assert parse_number(text) is None


def test_normalize_is_recursive() -> None:
    assert normalize({"a": ["8/255", "x"], "b": {"c": "1e-3"}}) == {
        "a": [8 / 255, "x"], "b": {"c": 1e-3}}


def test_defaults_and_components() -> None:
    r = recipe()
    assert r.task == Component("toy_duality", {"n": 5})
    assert r.train.optimizer == Component("sgd", {"lr": 0.1})
    assert r.train.weight_perturbation.name == "none"
    assert r.seed == 0 and r.device == "auto"


def test_eps_fraction_in_component_params_and_column_name() -> None:
    r = recipe(eval={"attacks": [{"name": "pgd", "norm": "linf", "eps": "8/255"},
                                 {"name": "fgsm", "eps": 0.5, "label": "mine"}]})
    pgd, fgsm = r.eval.attacks
    assert pgd.params["eps"] == pytest.approx(8 / 255)
    assert pgd.column() == "pgd-linf-8/255"
    assert fgsm.column() == "mine" and "label" not in fgsm.params


def test_string_shorthand_for_component() -> None:
    assert recipe(["train.weight_perturbation=sam"]).train.weight_perturbation.name == "sam"


def test_overrides_nested_list_and_yaml_values() -> None:
    r = recipe(
        ["train.weight_perturbation.name=sam", "train.weight_perturbation.rho=0.1", "seed=3",
         "train.schedule.milestones=[75, 90]", "eval.attacks.0.eps=2/255", "output_dir=null"],
        eval={"attacks": [{"name": "pgd", "eps": "8/255"}]},
    )
    assert r.train.weight_perturbation == Component("sam", {"rho": 0.1})
    assert r.seed == 3 and r.train.schedule.milestones == [75, 90]
    assert r.eval.attacks[0].params["eps"] == pytest.approx(2 / 255)
    assert r.output_dir is None


def test_round_trip_through_config_yaml() -> None:
    r = recipe(["train.weight_perturbation.name=sam"], eval={"attacks": [{"name": "pgd"}]})
    again = recipe_from_dict(yaml.safe_load(yaml.safe_dump(r.as_dict())))
    assert again.as_dict() == r.as_dict()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trian.epochs=3"], "Unknown key 'trian'. Did you mean: train?"),
        (["train.epoch=3"], "Unknown key 'train.epoch'. Did you mean: epochs"),
        (["train.batch_size=abc"], "train.batch_size: expected an integer, got 'abc'"),
        (["train.batch_size=0"], "train.batch_size: must be >= 1, got 0"),
        (["train.epochs=2.5"], "train.epochs: expected an integer"),
        (["seed=-1"], "seed: must be >= 0"),
        (["train.schedule.name=cosin"], "Did you mean: cosine?"),
        (["train.schedule.gamma=2"], "train.schedule.gamma: must be in (0, 1]"),
        (["train.schedule.milestones=[90, 75]"], "increasing positive epochs"),
        (["train.iterations=10"], "set exactly one of train.epochs or train.iterations"),
        (["device=gpu"], "device: expected auto, cpu, cuda or cuda:N"),
        (["eval.n_examples=0"], "eval.n_examples: must be >= 1"),
        (["train.optimizer.lr=fast"], None),  # passed to the factory; validated there
        (["task.name="], "task.name: missing"),
        (["seed"], "expected key.path=value"),
        (["eval.attacks.3.eps=1"], "override 'eval.attacks.3': no list item 3 (list has 0)"),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], message: str | None) -> None:
    if message is None:
        recipe(overrides)
        return
    with pytest.raises(SamatError) as info:
        recipe(overrides)
    assert message in str(info.value)


def test_override_edits_default_component() -> None:
    r = recipe(["train.optimizer.lr=0.05"])
    assert r.train.optimizer == Component("sgd", {"lr": 0.05})
    assert recipe(["train.optimizer.name=adam"]).train.optimizer == Component("adam", {"lr": 0.1})


def test_task_is_required() -> None:
    with pytest.raises(SamatError, match="task: required key missing"):
        recipe_from_dict({"train": {"epochs": 1}})


def test_top_level_must_be_mapping() -> None:
    with pytest.raises(SamatError, match="expected a mapping"):
        recipe_from_dict(["task"])


def test_duplicate_attack_columns_rejected() -> None:
    with pytest.raises(SamatError, match="share a label"):
        recipe(eval={"attacks": [{"name": "pgd", "eps": 0.1}, {"name": "pgd", "eps": 0.1}]})


def test_load_recipe_names_it_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "my_recipe.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert load_recipe(path).name == "my_recipe"
    assert load_recipe(path, ["name=other"]).name == "other"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SamatError, match="recipe file not found: .*nope.yaml"):
        load_recipe(tmp_path / "nope.yaml")


def test_malformed_yaml_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("task:\n  name: toy\n  n: [1, 2\nseed: 1\n")
    with pytest.raises(SamatError) as info:
        load_recipe(path)
    assert f"{path}:4:" in str(info.value) and "malformed YAML" in str(info.value)


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("task: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(SamatError, match="malformed YAML"):
        load_recipe(path)


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)


def test_merge_rules() -> None:
    base = {"train": {"epochs": 5, "optimizer": {"name": "sgd", "lr": 0.1},
                      "weight_perturbation": {"name": "sam", "rho": 0.1}},
            "eval": {"attacks": [{"name": "fgsm"}, {"name": "pgd"}], "n_examples": 10}}
    over = {"train": {"optimizer": {"lr": 0.05}, "weight_perturbation": {"name": "none"}},
            "eval": {"attacks": [{"name": "pgd"}], "n_examples": None}}
    assert merge(base, over) == {
        "train": {"epochs": 5, "optimizer": {"name": "sgd", "lr": 0.05},  # mappings merge
                  "weight_perturbation": {"name": "none"}},  # another name: no stray rho
        "eval": {"attacks": [{"name": "pgd"}], "n_examples": None}}  # lists, null replace
    assert base["train"]["optimizer"] == {"name": "sgd", "lr": 0.1}  # inputs untouched


def test_merge_overrides_make_the_merge_with_the_fewest_keys() -> None:
    base = {"seed": 0, "train": {"epochs": 5, "optimizer": {"name": "sgd", "lr": 0.1},
                                 "weight_perturbation": {"name": "sam", "rho": 0.1}}}
    over = {"seed": 0, "train": {"epochs": 5, "optimizer": {"name": "adam", "lr": 0.1},
                                 "weight_perturbation": {"name": "sam", "rho": 0.2}},
            "eval": {"n_examples": 10}}
    overrides = merge_overrides(base, over)
    assert overrides == {"train.optimizer": {"name": "adam", "lr": 0.1},
                         "train.weight_perturbation.rho": 0.2, "eval": {"n_examples": 10}}
    applied = copy.deepcopy(base)
    for key, value in overrides.items():
        apply_override(applied, key.split("."), value)
    assert applied == merge(base, over)
    assert merge_overrides(base, base) == {}


def test_extends_parents_in_order_then_the_file(tmp_path: Path) -> None:
    write(tmp_path, {
        "shared/training.yaml": "train: {epochs: 3, optimizer: {name: sgd, lr: 0.1}}\n",
        "shared/attacks.yaml": "eval:\n  attacks:\n    - {name: fgsm, eps: 8/255}\n",
        "base.yaml": "name: base\ndescription: the base\nextends: shared/training.yaml\n"
                     "task: {name: toy_duality, n: 5}\ntrain: {epochs: 2}\n",
        "child/sam.yaml": "extends: [../base.yaml, ../shared/attacks.yaml]\n"
                          "train: {weight_perturbation: {name: sam, rho: 0.1}}\n",
    })
    r = load_recipe(tmp_path / "child" / "sam.yaml", ["train.optimizer.lr=0.05"])
    assert r.name == "sam" and r.description == ""  # a recipe's identity is not inherited
    assert r.train.epochs == 2 and r.train.optimizer == Component("sgd", {"lr": 0.05})
    assert r.train.weight_perturbation == Component("sam", {"rho": 0.1})
    assert [a.column() for a in r.eval.attacks] == ["fgsm-8/255"]
    data, sources = compose_recipe(tmp_path / "child" / "sam.yaml")
    assert "extends" not in data
    assert sources["eval.attacks.0"] == f"{tmp_path / 'child' / '../shared/attacks.yaml'}:3"


def test_extends_cycle_names_the_chain(tmp_path: Path) -> None:
    write(tmp_path, {"a.yaml": "extends: b.yaml\ntask: toy_duality\n",
                     "b.yaml": "extends: a.yaml\n"})
    with pytest.raises(SamatError, match=r"a.yaml:1: extends: a cycle \(.*a.yaml -> "
                       r".*b.yaml -> .*a.yaml\)"):
        load_recipe(tmp_path / "a.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("extends: [1]\n", "r.yaml:1: extends: expected a recipe file or a list"),
    ("extends: nope.yaml\n", "r.yaml:1: extends: 'nope.yaml' not found"),
    ("extends:\n  - f.yaml\n  - gone.yaml\n", "r.yaml:3: extends: 'gone.yaml' not found"),
])
def test_bad_extends_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, {"r.yaml": text + "task: toy_duality\ntrain: {epochs: 1}\n",
                     "f.yaml": "seed: 1\n"})
    with pytest.raises(SamatError, match=message):
        load_recipe(tmp_path / "r.yaml")


def test_errors_inside_a_fragment_name_its_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {
        "frag.yaml": "train:\n  schedule: {name: step, milestones: [3], gamma: 2}\n"
                     "  optimizer: {name: sgd, lr: 0.1, momentumm: 0.9}\n",
        "broken.yaml": "train:\n  epochs: [1\n",
        "r.yaml": "extends: frag.yaml\ntask: toy_duality\ntrain: {epochs: 4}\n",
        "s.yaml": "extends: broken.yaml\ntask: toy_duality\n",
        "t.yaml": "extends: frag.yaml\ntask: toy_duality\ntrain: {epochs: 4, bogus: 1}\n",
    })
    with pytest.raises(SamatError) as info:
        load_recipe(tmp_path / "r.yaml")
    assert str(info.value).startswith(f"{tmp_path / 'frag.yaml'}:2: train.schedule.gamma: ")
    with pytest.raises(SamatError, match=r"broken.yaml:3:1: malformed YAML"):
        load_recipe(tmp_path / "s.yaml")
    with pytest.raises(SamatError) as info:  # the file's own key: no file prefix, as before
        load_recipe(tmp_path / "t.yaml")
    assert str(info.value).startswith("Unknown key 'train.bogus'")
    # an override that sets the key: the command line is to blame, not the fragment
    with pytest.raises(SamatError) as info:
        load_recipe(tmp_path / "r.yaml", ["train.schedule.gamma=3"])
    assert str(info.value).startswith("train.schedule.gamma: must be in (0, 1], got 3")


def test_build_errors_about_a_fragments_key_name_its_file_and_line(tmp_path: Path) -> None:
    from samat.runner import build_components

    write(tmp_path, {
        "attacks.yaml": "eval:\n  attacks:\n    - {name: fgsm, eps: -1}\n    - {name: nosuch}\n",
        "r.yaml": "extends: attacks.yaml\ntask: {name: toy_duality, n: 5}\ndevice: cpu\n"
                  "train: {epochs: 1}\n",
    })
    frag = tmp_path / "attacks.yaml"
    with pytest.raises(SamatError) as info:  # the registry's own check: the key ends the line
        build_components(load_recipe(tmp_path / "r.yaml", ["eval.attacks.0.eps=0.1"]))
    assert str(info.value).startswith(f"{frag}:4: Unknown attack 'nosuch'.")
    assert str(info.value).endswith("(at eval.attacks.1.name)")
    with pytest.raises(SamatError) as info:  # the factory's check: the key starts the line
        build_components(load_recipe(tmp_path / "r.yaml", ["eval.attacks.1.name=fgsm"]))
    assert str(info.value) == f"{frag}:3: eval.attacks.0: eps must be >= 0, got -1"
    with pytest.raises(SamatError) as info:  # set on the command line: no file to blame
        build_components(load_recipe(tmp_path / "r.yaml", [
            "eval.attacks=[{name: fgsm, eps: -2}]"]))
    assert str(info.value) == "eval.attacks.0: eps must be >= 0, got -2"


def test_where_keys_were_written_is_no_recipe_key(tmp_path: Path) -> None:
    write(tmp_path, {"r.yaml": "task: {name: toy_duality, n: 5}\ntrain: {epochs: 1}\n"})
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.origin is not None and recipe.origin.path == tmp_path / "r.yaml"
    assert "origin" not in recipe.as_dict()
    assert recipe_from_dict(recipe.as_dict()) == recipe  # compare=False: same recipe
    with pytest.raises(SamatError, match="Unknown key 'origin'"):
        recipe_from_dict({**BASE, "origin": "x"})


def test_extends_a_shipped_recipe_by_name(tmp_path: Path) -> None:
    write(tmp_path, {"mine.yaml": "extends: digits/sam\ntrain: {epochs: 3}\n"})
    r = load_recipe(tmp_path / "mine.yaml")
    assert (r.name, r.train.epochs, r.train.weight_perturbation.name) == ("mine", 3, "sam")
    assert r.train.schedule.milestones == [22, 27]

def test_home_is_expanded_in_every_string_value(monkeypatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    r = recipe_from_dict({**BASE, "output_dir": "~/runs"}, ["task.root=~/data",
                                                                "description=a ~/b"])
    assert r.output_dir == "/home/someone/runs" and r.task.params["root"] == "/home/someone/data"
    assert r.description == "a ~/b"  # only a leading ~ is a home directory
