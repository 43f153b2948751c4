"""Input perturbations: exact agreement with torchattacks, invariants, ModelAttack."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samat.interfaces import AttackMismatch, Probe
from samat.perturb import FGSM, PGD, Identity, ModelAttack

torchattacks = pytest.importorskip("torchattacks")


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )


@pytest.fixture
def cnn() -> nn.Module:
    model = small_cnn()
    model(torch.rand(32, 3, 8, 8))  # give BatchNorm non-trivial running statistics
    return model.eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(64, 3, 8, 8, generator=gen), torch.randint(0, 10, (64,), generator=gen)


ATTACKS = {
    "linf": lambda **kw: PGD("linf", eps=8 / 255, alpha=2 / 255, steps=10, **kw),
    "l2": lambda **kw: PGD("l2", eps=0.5, alpha=0.1, steps=10, **kw),
    "fgsm": lambda **kw: FGSM(eps=8 / 255, **kw),
}


def reference(kind: str, model: nn.Module, random_start: bool) -> torchattacks.Attack:
    if kind == "linf":
        return torchattacks.PGD(model, 8 / 255, 2 / 255, 10, random_start=random_start)
    if kind == "l2":
        return torchattacks.PGDL2(model, 0.5, 0.1, 10, random_start=random_start)
    return torchattacks.FGSM(model, 8 / 255)


@pytest.mark.parametrize("kind", ["linf", "l2", "fgsm"])
def test_equals_torchattacks_without_random_start(kind, cnn, batch):
    x, y = batch
    kwargs = {} if kind == "fgsm" else {"random_start": False}
    ours = ATTACKS[kind](**kwargs).perturb(cnn, F.cross_entropy, x, y)
    theirs = reference(kind, cnn, random_start=False)(x, y)
    assert not torch.equal(ours, x)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("kind", ["linf", "l2"])
def test_random_start_equals_torchattacks_with_same_seed(kind, cnn, batch):
    x, y = batch
    torch.manual_seed(7)
    ours = ATTACKS[kind]().perturb(cnn, F.cross_entropy, x, y)
    torch.manual_seed(7)
    theirs = reference(kind, cnn, random_start=True)(x, y)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("kind", ["linf", "l2", "fgsm"])
def test_leaves_parameter_grads_and_bn_statistics_alone(kind, cnn, batch):
    x, y = batch
    cnn.train()
    weight, bias = cnn[0].weight, cnn[0].bias
    weight.grad = torch.full_like(weight, 0.25)
    grad_before = weight.grad.clone()
    buffers_before = {k: v.clone() for k, v in cnn.named_buffers()}
    ATTACKS[kind]().perturb(cnn, F.cross_entropy, x, y)
    assert torch.equal(weight.grad, grad_before)
    assert bias.grad is None
    assert all(p.grad is None for p in cnn[1:].parameters())
    for name, value in cnn.named_buffers():
        assert torch.equal(value, buffers_before[name]), name
    assert cnn.training and cnn[1].training and cnn[1].track_running_stats


@pytest.mark.parametrize(
    "attack",
    [
        PGD("linf", eps=0.05, alpha=0.02, steps=4, restarts=2),
        PGD("l2", eps=0.3, alpha=0.2, steps=4, restarts=2),
        FGSM(eps=0.05),
    ],
    ids=["linf", "l2", "fgsm"],
)
def test_output_in_bounds_and_ball(attack, cnn, batch):
    x, y = batch
    x = x.double()
    model = cnn.double()
    x_adv = attack.perturb(model, F.cross_entropy, x.requires_grad_(), y)
    assert x_adv.dtype == x.dtype and x_adv.device == x.device and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).detach().flatten(1)
    if getattr(attack, "norm", "linf") == "linf":
        assert delta.abs().max() <= attack.eps + 1e-6
    else:
        assert (delta.norm(dim=1) <= attack.eps * (1 + 1e-5)).all()


def test_eps_zero_returns_a_copy(cnn, batch):
    x, y = batch
    for attack in (PGD("l2", eps=0.0, alpha=0.1), FGSM(eps=0.0)):
        x_adv = attack.perturb(cnn, F.cross_entropy, x, y)
        assert torch.equal(x_adv, x) and x_adv.data_ptr() != x.data_ptr()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "l1"}, "norm"),
        ({"eps": -0.1}, "eps"),
        ({"alpha": 0.0}, "alpha"),
        ({"steps": 0}, "steps"),
        ({"restarts": 0}, "restarts"),
        ({"restarts": 2, "random_start": False}, "restarts"),
        ({"bounds": (1.0, 0.0)}, "bounds"),
        ({"mask": [1, 0]}, "mask"),
    ],
)
def test_pgd_validates_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PGD(**kwargs)


def test_fgsm_validates_eps():
    with pytest.raises(ValueError, match="eps"):
        FGSM(eps=-1.0)


def per_example_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_never_lower_the_per_example_loss(norm, cnn, batch):
    # The first restart draws the same random start as restarts=1, and the best restart is
    # kept per example, so no example can end with a lower loss.
    x, y = batch
    eps, alpha = (8 / 255, 2 / 255) if norm == "linf" else (0.5, 0.1)
    torch.manual_seed(3)
    one = PGD(norm, eps, alpha, steps=3, restarts=1).perturb(cnn, F.cross_entropy, x, y)
    torch.manual_seed(3)
    many = PGD(norm, eps, alpha, steps=3, restarts=4).perturb(cnn, F.cross_entropy, x, y)
    loss_one, loss_many = per_example_ce(cnn, one, y), per_example_ce(cnn, many, y)
    assert (loss_many >= loss_one).all()
    assert (loss_many > loss_one).any()


def test_restarts_with_generic_output_and_loss():
    # (N,) sign scores with a ±1 target: per-example losses come from slices of one output.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    x, y = torch.randn(10, 6), torch.where(torch.rand(10) > 0.5, 1.0, -1.0)
    attack = PGD("l2", eps=1.0, alpha=0.3, steps=3, restarts=3, bounds=None)
    x_adv = attack.perturb(model, F.soft_margin_loss, x, y)
    assert x_adv.shape == x.shape
    assert F.soft_margin_loss(model(x_adv), y) > F.soft_margin_loss(model(x), y)


@pytest.mark.parametrize("kind", ["linf", "l2", "fgsm"])
def test_mask_zeros_are_never_changed(kind, cnn, batch):
    x, y = batch
    mask = torch.ones(1, 3, 1, 1)
    mask[:, 1] = 0
    x_adv = ATTACKS[kind](mask=mask).perturb(cnn, F.cross_entropy, x, y)
    assert torch.equal(x_adv[:, 1], x[:, 1])
    assert not torch.equal(x_adv[:, 0], x[:, 0])
    assert ATTACKS[kind](mask=mask).describe()["mask"] == "custom"


@pytest.mark.parametrize(
    "make",
    [lambda bounds: PGD("linf", eps=0.5, alpha=0.25, steps=2, bounds=bounds),
     lambda bounds: FGSM(eps=0.5, bounds=bounds)],
    ids=["pgd", "fgsm"],
)
def test_bounds_none_allows_values_outside_unit_interval(make, cnn, batch):
    x, y = batch
    unbounded = make(None).perturb(cnn, F.cross_entropy, x, y)
    assert unbounded.min() < 0 and unbounded.max() > 1
    assert (unbounded - x).abs().max() <= 0.5 + 1e-6
    bounded = make((0.0, 1.0)).perturb(cnn, F.cross_entropy, x, y)
    assert bounded.min() >= 0 and bounded.max() <= 1


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.15), ("l2", 0.6)])
def test_pgd_lowers_accuracy_of_a_trained_model(norm, eps):
    torch.manual_seed(0)
    n, d = 256, 8
    y = torch.randint(0, 2, (n,))
    x = (0.5 + torch.where(y[:, None] == 1, 0.1, -0.1) + 0.05 * torch.randn(n, d)).clamp(0, 1)
    model = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    attack = ModelAttack(PGD(norm, eps=eps, alpha=eps / 4, steps=10), model)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
    robust = (model(attack(x, y)).argmax(1) == y).float().mean()
    assert clean > 0.95
    assert robust < clean - 0.2


def test_identity_returns_input_without_calling_the_model(batch):
    x, y = batch

    def no_call(_: torch.Tensor) -> torch.Tensor:
        raise AssertionError("model called")

    assert Identity().perturb(no_call, F.cross_entropy, x, y) is x
    assert Identity().describe() == {"name": "none"}


def test_describe_records_every_parameter_as_json():
    pgd = PGD("l2", eps=0.5, alpha=0.1, steps=7, random_start=True, restarts=2, bounds=None)
    assert json.loads(json.dumps(pgd.describe())) == {
        "name": "pgd", "norm": "l2", "eps": 0.5, "alpha": 0.1, "steps": 7,
        "random_start": True, "restarts": 2, "bounds": None, "mask": None,
    }
    fgsm = FGSM(eps=0.1, bounds=[-1, 1])
    assert json.loads(json.dumps(fgsm.describe())) == {
        "name": "fgsm", "eps": 0.1, "bounds": [-1.0, 1.0], "mask": None,
    }


class ModeRecorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = small_cnn()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.body(x)


def test_model_attack_runs_in_eval_mode_and_restores_modes(batch):
    x, y = batch
    model = ModeRecorder().train()
    model.body[1].eval()  # mixed modes must come back as they were
    pgd = ATTACKS["linf"](random_start=False)
    attack = ModelAttack(pgd, model)
    with torch.no_grad():  # works even when called under no_grad
        x_adv = attack(x, y)
    assert model.modes == [False] * pgd.steps
    assert model.training and model.body[0].training and not model.body[1].training
    assert attack.name == "pgd" and attack.describe() == pgd.describe()
    assert torch.equal(x_adv, reference("linf", model.body.eval(), random_start=False)(x, y))


def test_model_attack_checks_that_it_can_differentiate_the_inputs():
    pgd = ModelAttack(PGD(eps=0.1, alpha=0.05, steps=1), nn.Linear(8, 3))
    y = torch.zeros(1, dtype=torch.long)
    assert pgd.check(Probe(torch.zeros(1, 8), y, torch.zeros(1, 3), (0.0, 1.0))) is None
    for x, shown in ((torch.zeros(1, 8, dtype=torch.long), "int64 tensors"),
                     ({"input_ids": torch.zeros(1, 8)}, "dict")):
        with pytest.raises(AttackMismatch) as raised:
            pgd.check(Probe(x, y, torch.zeros(1, 3), None))
        assert raised.value.problem == (f"pgd perturbs float input tensors, but the task's "
                                        f"inputs are {shown}")
        assert raised.value.key is None and raised.value.fix
