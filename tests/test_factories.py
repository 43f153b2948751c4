from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import samat
from samat.errors import SamatError, UnknownNameError
from samat.factories import (
    call_factory,
    check_components,
    create_input_perturbation,
    create_task,
    create_weight_perturbation,
)
from samat.recipe import recipe_from_dict


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def test_create_attack_torchattacks_style() -> None:
    net = model().eval()
    attack = samat.create_attack("pgd", net, norm="linf", eps=8 / 255, alpha=2 / 255, steps=3,
                                 random_start=False)
    x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    x_adv = attack(x, y)
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert attack.describe()["eps"] == pytest.approx(8 / 255)


def test_unknown_attack_message() -> None:
    with pytest.raises(UnknownNameError) as info:
        samat.create_attack("pgdd", model())
    message = str(info.value)
    assert message.startswith("Unknown attack 'pgdd'. Did you mean: pgd")
    assert "? Available: " in message and "fgsm" in message.split("Available: ")[1]


def test_unknown_parameter_is_named_with_suggestion() -> None:
    with pytest.raises(SamatError) as info:
        samat.create_attack("pgd", model(), path="eval.attacks.0", epss=0.1)
    assert str(info.value).startswith("Unknown key 'eval.attacks.0.epss'. Did you mean: eps,")
    assert "Valid keys here: name, norm, eps, alpha" in str(info.value)


def test_factory_value_errors_name_the_path() -> None:
    with pytest.raises(SamatError, match=r"^train.weight_perturbation: .*rho"):
        create_weight_perturbation("sam", model().parameters(), "sgd", {"lr": 0.1},
                                   path="train.weight_perturbation", rho=-1.0)
    with pytest.raises(SamatError, match=r"^eval.attacks.1: .*steps"):
        samat.create_attack("pgd", model(), path="eval.attacks.1", eps=0.1, steps=0)


def test_optimizer_validation() -> None:
    params = list(model().parameters())
    with pytest.raises(UnknownNameError, match="Unknown optimizer 'sdg'. Did you mean: sgd?"):
        create_weight_perturbation("none", params, "sdg", {"lr": 0.1})
    with pytest.raises(SamatError, match="Unknown key 'optimizer.betas'"):
        create_weight_perturbation("none", params, "sgd", {"lr": 0.1, "betas": [0.9, 0.99]})
    with pytest.raises(SamatError, match="optimizer: Invalid learning rate"):
        create_weight_perturbation("none", params, "sgd", {"lr": -1.0})
    step = create_weight_perturbation("sam", params, "adamw", {"lr": 1e-3}, rho=0.05)
    assert isinstance(step.optimizer, samat.SAM)
    assert isinstance(step.optimizer.base_optimizer, torch.optim.AdamW)


def test_task_domain_defaults_reach_perturbations() -> None:
    task = create_task("toy_duality", n=4, n_train=16, n_test=16)
    pgd = create_input_perturbation("pgd", task=task, norm="linf", eps=0.1, alpha=0.05, steps=2)
    assert pgd.describe()["bounds"] is None  # the toy task's features are unbounded
    assert pgd.describe()["mask"] == "custom"


def test_call_factory_injects_defaults_only_where_accepted() -> None:
    def factory(a: int, bounds: tuple | None = (0, 1)) -> tuple:
        return a, bounds

    assert call_factory(factory, {"a": 1}, "x", defaults={"bounds": None, "mask": 1}) == (1, None)
    assert call_factory(factory, {"a": 1, "bounds": (2, 3)}, "x",
                        defaults={"bounds": None}) == (1, (2, 3))


@pytest.mark.parametrize(("override", "message"), [
    ("train.weight_perturbation.rhoo=0.1", "Unknown key 'train.weight_perturbation.rhoo'"),
    ("train.weight_perturbation.task=1", "Unknown key 'train.weight_perturbation.task'"),
    ("train.input_perturbation.path=x", "Unknown key 'train.input_perturbation.path'"),
    ("eval.attacks.0.model=x", "Unknown key 'eval.attacks.0.model'"),
    ("task.nn=3", "Unknown key 'task.nn'. Did you mean: n?"),
    ("train.optimizer.name=sgdd", "Unknown optimizer 'sgdd'"),
])
def test_check_components_without_building(override: str, message: str) -> None:
    base = {"task": {"name": "toy_duality", "n": 4}, "train": {
        "epochs": 1, "weight_perturbation": {"name": "sam", "rho": 0.1},
        "input_perturbation": {"name": "pgd", "eps": 0.1}},
        "eval": {"attacks": [{"name": "fgsm", "eps": 0.1}]}}
    check_components(recipe_from_dict(base))
    with pytest.raises(SamatError, match=re.escape(message)):
        check_components(recipe_from_dict(base, [override]))
