"""ESAM and LookSAM weight perturbations as the trainer uses them: reductions to SAM, SDS by
hand, per-example losses, GradScaler, validation and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from samat import runner as run_module
from samat.batchnorm import frozen_bn_stats
from samat.errors import SamatError
from samat.factories import create_weight_perturbation
from samat.interfaces import Task
from samat.train import Trainer
from samat.weight import ESAMStep, LookSAMStep, SAMStep
from samat.weight.steps import _subset


def setup() -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    return model, torch.randn(16, 6), torch.randint(0, 3, (16,))


class _CE(Task):
    """Default loss and per-example losses (no data needed here)."""

    def train_dataset(self) -> torch.utils.data.Dataset: ...
    def eval_dataset(self) -> torch.utils.data.Dataset: ...
    def build_model(self) -> nn.Module: ...


class _OwnLoss(_CE):
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(output, F.one_hot(target, output.shape[1]).float())


@pytest.mark.parametrize("make", [
    lambda m: ESAMStep(m.parameters(), torch.optim.SGD, {"lr": 0.5, "momentum": 0.9}, rho=0.1,
                       beta=1, gamma=1),
    lambda m: LookSAMStep(m.parameters(), torch.optim.SGD, {"lr": 0.5, "momentum": 0.9},
                          rho=0.1, k=1),
], ids=["esam", "looksam"])
def test_reduces_to_sam_step_exactly(make: object) -> None:
    models = []
    for build in (lambda m: SAMStep(m.parameters(), torch.optim.SGD, {"lr": 0.5, "momentum": 0.9},
                                    rho=0.1), make):
        model, x, y = setup()
        step = build(model)
        for _ in range(3):
            step.step(model, F.cross_entropy, x, y)
        models.append(model)
    sam, other = models
    assert all(torch.equal(p, q) for p, q in zip(sam.parameters(), other.parameters(), strict=True))
    assert torch.equal(sam[1].running_mean, other[1].running_mean)
    assert int(other[1].num_batches_tracked) == 3


def test_esam_sds_descends_on_the_sharpest_examples() -> None:
    model, x, y = setup()
    rho, lr = 0.5, 0.5
    params = list(model.parameters())
    w = [p.detach().clone() for p in params]
    before = F.cross_entropy(model(x), y, reduction="none")
    g = torch.autograd.grad(before.mean(), params)
    norm = torch.sqrt(sum((t**2).sum() for t in g))
    with torch.no_grad():
        for p, gi in zip(params, g, strict=True):
            p.add_(rho * gi / norm)
        with frozen_bn_stats(model):
            after = F.cross_entropy(model(x), y, reduction="none")
    chosen = (after - before.detach()).topk(4).indices.sort().values
    with frozen_bn_stats(model):
        g_adv = torch.autograd.grad(F.cross_entropy(model(x[chosen]), y[chosen]), params)
    expected = [wi - lr * ga for wi, ga in zip(w, g_adv, strict=True)]

    model, x, y = setup()
    step = ESAMStep(model.parameters(), torch.optim.SGD, {"lr": lr}, rho=rho, beta=1,
                    gamma=0.25, task=_CE())
    result = step.step(model, F.cross_entropy, x, y)
    torch.testing.assert_close(result.loss, before.mean().detach())
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e)
    assert int(model[1].num_batches_tracked) == 1  # only the first pass updates BN statistics
    assert step.describe() == {"name": "esam", "rho": rho, "beta": 1.0, "gamma": 0.25}


def test_looksam_step_describes_itself() -> None:
    model, _, _ = setup()
    step = LookSAMStep(model.parameters(), torch.optim.SGD, {"lr": 0.1}, rho=0.2, k=4, alpha=0)
    assert step.describe() == {"name": "looksam", "rho": 0.2, "k": 4, "alpha": 0.0}


def test_default_example_losses_average_the_non_batch_dimensions() -> None:
    logits, target = torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4, 2, 2))
    torch.testing.assert_close(_CE().example_losses(logits, target),
                               F.cross_entropy(logits, target, reduction="none").mean((1, 2)))


def test_subset_of_structured_batches() -> None:
    batch = {"input_ids": torch.arange(8).view(4, 2), "text": ["a", "b", "c", "d"],
             "pair": (torch.arange(4), torch.zeros(4, 1))}
    out = _subset(batch, torch.tensor([1, 3]), 4)
    assert out["input_ids"].tolist() == [[2, 3], [6, 7]] and out["text"] == ["b", "d"]
    assert out["pair"][0].tolist() == [1, 3] and isinstance(out["pair"], tuple)
    with pytest.raises(SamatError, match="cannot select examples from a batch of type object"):
        _subset(object(), torch.tensor([0]), 1)


def test_esam_gamma_needs_per_example_losses() -> None:
    model, _, _ = setup()
    with pytest.raises(SamatError, match=r"^train\.weight_perturbation: gamma < 1 needs "
                                         r"per-example losses, but task _OwnLoss overrides"):
        create_weight_perturbation("esam", model.parameters(), "sgd", {"lr": 0.1},
                                   path="train.weight_perturbation", task=_OwnLoss(), gamma=0.5)
    with pytest.raises(ValueError, match="pass task="):
        ESAMStep(model.parameters(), torch.optim.SGD, {"lr": 0.1})
    step = create_weight_perturbation("esam", model.parameters(), "sgd", {"lr": 0.1},
                                      task=_OwnLoss(), gamma=1)  # no selection: fine
    assert step.task is not None


@pytest.mark.parametrize(("name", "params", "message"), [
    ("esam", {"beta": 0}, r"weight_perturbation: beta must be a number in \(0, 1\], got 0"),
    ("esam", {"gamma": 2}, r"weight_perturbation: gamma must be a number in \(0, 1\], got 2"),
    ("looksam", {"k": 0}, r"weight_perturbation: k must be an integer >= 1, got 0"),
    ("looksam", {"alpha": -1}, r"weight_perturbation: alpha must be a number >= 0, got -1"),
    ("looksam", {"kk": 2}, r"Unknown key 'weight_perturbation.kk'. Did you mean: k\?"),
])
def test_bad_parameters_name_the_key(name: str, params: dict, message: str) -> None:
    model, _, _ = setup()
    with pytest.raises(SamatError, match=message):
        create_weight_perturbation(name, model.parameters(), "sgd", {"lr": 0.1}, task=_CE(),
                                   **params)


@pytest.mark.parametrize("make", [
    lambda m: ESAMStep(m.parameters(), torch.optim.SGD, {"lr": 0.1, "momentum": 0.9},
                       beta=0.5, gamma=0.5, task=_CE()),
    lambda m: LookSAMStep(m.parameters(), torch.optim.Adam, {"lr": 1e-2}, k=2),
], ids=["esam", "looksam"])
def test_grad_scaler_matches_fp32(make: object) -> None:
    runs = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**10)):
        model, x, y = setup()
        step = make(model)
        step.scaler = scaler
        torch.manual_seed(3)  # the SWP masks
        for _ in range(4):
            step.step(model, F.cross_entropy, x, y)
            if scaler:
                scaler.update()
        runs.append(model)
    for p, q in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


def _recipe(tmp_path: Path, weight: dict) -> Path:
    recipe = {
        "task": {"name": "fixture", "n_train": 256, "n_test": 256},
        "seed": 1, "device": "cpu",
        "train": {"epochs": 2, "batch_size": 32, "checkpoint_every": 5,
                  "optimizer": {"name": "adam", "lr": 0.01},
                  "weight_perturbation": weight, "input_perturbation": {"name": "none"}},
        "eval": {"attacks": []},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize("weight", [
    {"name": "esam", "rho": 0.1, "beta": 0.5, "gamma": 0.5},
    {"name": "looksam", "rho": 0.1, "k": 3, "alpha": 0.7},
], ids=["esam", "looksam"])
@pytest.mark.usefixtures("fixture_task")
def test_crash_then_resume_matches_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weight: dict
) -> None:
    recipe = _recipe(tmp_path, weight)
    full = run_module.run(recipe, [f"output_dir={tmp_path / 'full'}"])
    original_save = Trainer.save

    def crash_at_step_5(self: Trainer, path: Path, progress: dict | None = None) -> None:
        original_save(self, path, progress)
        if self.progress.step == 5:  # mid-epoch, mid LookSAM cycle (steps 3, 6 are SAM steps)
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", crash_at_step_5)
    crashed = [f"output_dir={tmp_path / 'crashed'}"]
    with pytest.raises(KeyboardInterrupt):
        run_module.run(recipe, crashed)
    monkeypatch.setattr(Trainer, "save", original_save)
    resumed = run_module.run(recipe, crashed, resume=True)
    assert resumed["natural"] == full["natural"]
    weights = [torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True)["model"]
               for d in ("full", "crashed")]
    assert all(torch.equal(t, weights[1][k]) for k, t in weights[0].items())
