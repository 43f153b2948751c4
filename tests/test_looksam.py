"""samat.weight.LookSAM: k=1 is SAM, the SAM and reuse steps by hand, protocol, GradScaler,
checkpoint resume, errors."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samat.weight import SAM, LookSAM


def _data(n: int = 16) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (n,),
                                                                                generator=gen)


def _mlp(dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(model(x), y)


def _steps(model: nn.Module, opt: SAM, x: Tensor, y: Tensor, n: int,
           scaler: torch.amp.GradScaler | None = None) -> None:
    """The documented protocol; a SAM object always takes the SAM pass."""
    for _ in range(n):
        loss = _loss(model, x, y)
        (scaler.scale(loss) if scaler else loss).backward()
        if getattr(opt, "sam_step_due", True):
            opt.first_step(zero_grad=True)
            loss = _loss(model, x, y)
            (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_k1_is_sam_exactly(base: str) -> None:
    x, y = _data()
    cls, kw = ((torch.optim.SGD, dict(lr=0.1, momentum=0.9)) if base == "sgd"
               else (torch.optim.Adam, dict(lr=1e-2)))
    sam_model, look_model = _mlp(), _mlp()
    _steps(sam_model, SAM(sam_model.parameters(), cls, rho=0.1, **kw), x, y, 3)
    _steps(look_model, LookSAM(look_model.parameters(), cls, rho=0.1, k=1, alpha=0.7, **kw),
           x, y, 3)
    for p, q in zip(sam_model.parameters(), look_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_sam_step_then_reuse_step_by_hand() -> None:
    x, y = _data()
    x1 = x.flip(0) * 0.5  # another batch for the reuse step
    rho, lr, alpha = 0.2, 0.3, 0.7
    model = _mlp()
    params = list(model.parameters())

    def flat_grad(inputs: Tensor) -> Tensor:
        return torch.cat([t.flatten() for t in torch.autograd.grad(_loss(model, inputs, y),
                                                                    params)])

    def set_flat(v: Tensor) -> None:
        torch.nn.utils.vector_to_parameters(v, params)

    w0 = torch.nn.utils.parameters_to_vector(params).detach()
    g = flat_grad(x)
    set_flat(w0 + rho * g / g.norm())
    g_s = flat_grad(x)
    g_v = g_s - g_s.norm() * (g @ g_s / (g.norm() * g_s.norm())) * g / g.norm()  # the paper's
    w1 = w0 - lr * g_s
    set_flat(w1)
    g1 = flat_grad(x1)
    w2 = w1 - lr * (g1 + alpha * g1.norm() / g_v.norm() * g_v)
    set_flat(w0)

    look = LookSAM(params, torch.optim.SGD, rho=rho, k=3, alpha=alpha, lr=lr)
    assert look.sam_step_due
    _steps(model, look, x, y, 1)
    torch.testing.assert_close(torch.nn.utils.parameters_to_vector(params), w1)
    u = torch.cat([look._direction[p].flatten() for p in params])
    torch.testing.assert_close(u, g_v / g_v.norm())
    assert not look.sam_step_due
    _steps(model, look, x1, y, 1)
    torch.testing.assert_close(torch.nn.utils.parameters_to_vector(params), w2)
    assert look.steps == 2 and not look.sam_step_due


def test_closure_api_equals_the_protocol() -> None:
    x, y = _data()
    a, b = _mlp(), _mlp()
    _steps(a, LookSAM(a.parameters(), torch.optim.SGD, k=2, lr=0.1), x, y, 5)
    look = LookSAM(b.parameters(), torch.optim.SGD, k=2, lr=0.1)
    for _ in range(5):
        _loss(b, x, y).backward()
        look.step(lambda: _loss(b, x, y).backward())
        look.zero_grad()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_step_without_the_due_sam_pass_is_an_error() -> None:
    x, y = _data()
    model = _mlp()
    look = LookSAM(model.parameters(), torch.optim.SGD, k=4, lr=0.1)
    _loss(model, x, y).backward()
    with pytest.raises(RuntimeError, match="LookSAM step 0 is a SAM step"):
        look.step()


def test_grad_scaler_matches_fp32() -> None:
    x, y = _data()
    x = x.float()
    runs = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**10)):
        model = _mlp(torch.float32)
        _steps(model, LookSAM(model.parameters(), torch.optim.SGD, rho=0.1, k=2, lr=0.1,
                              momentum=0.9), x, y, 5, scaler)
        runs.append(model)
    for p, q in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_grad_scaler_skipped_reuse_step_changes_nothing() -> None:
    x, y = _data()
    x = x.float()
    model = _mlp(torch.float32)
    look = LookSAM(model.parameters(), torch.optim.SGD, k=3, lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    _steps(model, look, x, y, 1, scaler)
    w = [p.detach().clone() for p in model.parameters()]
    scaler.scale(_loss(model, x, y)).backward()
    model[0].weight.grad[0, 0] = float("inf")
    scaler.step(look)
    scaler.update()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), w, strict=True))
    assert look.steps == 2 and scaler.get_scale() == 2.0**9


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_resume_is_bitwise_identical(base: str) -> None:
    x, y = _data()

    def make(seed: int) -> tuple[nn.Module, LookSAM]:
        model = _mlp(seed=seed)
        cls, kw = ((torch.optim.SGD, dict(lr=0.1, momentum=0.9)) if base == "sgd"
                   else (torch.optim.Adam, dict(lr=1e-2)))
        return model, LookSAM(model.parameters(), cls, k=3, alpha=0.5, **kw)

    model_a, look_a = make(0)
    _steps(model_a, look_a, x, y, 4)  # mid-cycle: step 4 reuses the direction from step 3
    buf = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": look_a.state_dict()}, buf)
    _steps(model_a, look_a, x, y, 4)

    model_b, look_b = make(1)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model_b.load_state_dict(ckpt["model"])
    look_b.load_state_dict(ckpt["opt"])
    assert look_b.steps == 4 and look_b.param_groups is look_b.base_optimizer.param_groups
    _steps(model_b, look_b, x, y, 4)
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_loads_a_sam_state_dict() -> None:
    model = _mlp()
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    look = LookSAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    look.load_state_dict(sam.state_dict())
    assert look.steps == 0 and look.sam_step_due


@pytest.mark.parametrize(("kw", "message"), [
    ({"k": 0}, r"k must be an integer >= 1, got 0"),
    ({"k": 2.5}, r"k must be an integer >= 1, got 2.5"),
    ({"k": True}, r"k must be an integer >= 1, got True"),
    ({"alpha": -0.1}, r"alpha must be a number >= 0, got -0.1"),
    ({"rho": -1.0}, r"rho must be > 0"),
])
def test_parameters_are_validated(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LookSAM(_mlp().parameters(), torch.optim.SGD, lr=0.1, **kw)
