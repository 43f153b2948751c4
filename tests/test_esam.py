"""samat.weight.ESAM: beta=1 is SAM, the SWP step by hand, SDS selection, GradScaler, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samat.weight import ESAM, SAM


def _data(n: int = 16) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (n,),
                                                                                generator=gen)


def _mlp(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _steps(model: nn.Module, opt: SAM, x: Tensor, y: Tensor, n: int,
           scaler: torch.amp.GradScaler | None = None) -> None:
    for _ in range(n):
        loss = F.cross_entropy(model(x), y)
        (scaler.scale(loss) if scaler else loss).backward()
        opt.first_step(zero_grad=True)
        loss = F.cross_entropy(model(x), y)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad()


def test_beta_one_is_sam_exactly() -> None:
    x, y = _data()
    kw = dict(rho=0.1, lr=0.1, momentum=0.9, weight_decay=5e-3)
    sam_model, esam_model = _mlp(), _mlp()
    _steps(sam_model, SAM(sam_model.parameters(), torch.optim.SGD, **kw), x, y, 3)
    esam = ESAM(esam_model.parameters(), torch.optim.SGD, beta=1, gamma=1, **kw)
    _steps(esam_model, esam, x, y, 3)
    for p, q in zip(sam_model.parameters(), esam_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_stochastic_weight_perturbation_by_hand() -> None:
    x, y = _data()
    model = _mlp()
    params = list(model.parameters())
    w = [p.detach().clone() for p in params]
    g = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    norm = torch.sqrt(sum((t**2).sum() for t in g))
    beta, rho, lr = 0.5, 0.2, 0.3
    gen = torch.Generator().manual_seed(7)
    masks = [torch.rand(p.shape, generator=gen) < beta for p in params]
    w_adv = [wi + rho / beta * m * gi / norm for wi, m, gi in zip(w, masks, g, strict=True)]
    for p, v in zip(params, w_adv, strict=True):
        p.data.copy_(v)
    g_adv = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    for p, wi in zip(params, w, strict=True):
        p.data.copy_(wi)

    esam = ESAM(params, torch.optim.SGD, rho=rho, beta=beta, lr=lr,
                generator=torch.Generator().manual_seed(7))
    F.cross_entropy(model(x), y).backward()
    esam.first_step(zero_grad=True)
    for p, v, wi, m in zip(params, w_adv, w, masks, strict=True):
        torch.testing.assert_close(p.detach(), v)
        assert torch.equal(p[~m], wi[~m])  # unselected weights are not perturbed at all
    assert 0 < sum(int(m.sum()) for m in masks) < sum(m.numel() for m in masks)
    F.cross_entropy(model(x), y).backward()
    esam.second_step(zero_grad=True)
    for p, wi, ga in zip(params, w, g_adv, strict=True):
        torch.testing.assert_close(p.detach(), wi - lr * ga)


def test_select_keeps_the_sharpest_fraction() -> None:
    model = _mlp()
    before = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    after = torch.tensor([1.5, 0.9, 3.0, 1.1, 2.0, 1.0])  # sharpness .5 -.1 2 .1 1 0
    half = ESAM(model.parameters(), torch.optim.SGD, gamma=0.5, lr=0.1)
    assert half.select(before, after).tolist() == [0, 2, 4]
    tenth = ESAM(model.parameters(), torch.optim.SGD, gamma=0.1, lr=0.1)
    assert tenth.select(before, after).tolist() == [2]  # at least one example
    whole = ESAM(model.parameters(), torch.optim.SGD, gamma=1.0, lr=0.1)
    assert whole.select(before, after) is None


@pytest.mark.parametrize(("key", "value"), [("beta", 0), ("beta", 1.5), ("gamma", 0.0),
                                            ("gamma", -1), ("beta", True), ("gamma", "half")])
def test_fractions_are_validated(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{key} must be a number in \(0, 1\], got"):
        ESAM(_mlp().parameters(), torch.optim.SGD, lr=0.1, **{key: value})


def test_rho_is_validated() -> None:
    with pytest.raises(ValueError, match="rho must be > 0"):
        ESAM(_mlp().parameters(), torch.optim.SGD, rho=0.0, lr=0.1)


def test_grad_scaler_matches_fp32() -> None:
    x, y = _data()
    x = x.float()
    runs = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**10)):
        model = _mlp(torch.float32)
        esam = ESAM(model.parameters(), torch.optim.SGD, rho=0.1, beta=0.5, lr=0.1,
                    momentum=0.9, generator=torch.Generator().manual_seed(1))
        _steps(model, esam, x, y, 4, scaler)
        runs.append(model)
    for p, q in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
