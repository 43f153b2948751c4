"""Tests for samat.weight: SAM/ASAM against an independent functional re-implementation, LR
schedulers, GradScaler (fp16) and bf16 autocast, checkpoint resume, and frozen_bn_stats."""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, MultiStepLR

from samat.batchnorm import frozen_bn_stats
from samat.weight import SAM

LR = (0.1, 0.02)  # per group
RHO = (0.05, 0.1)  # group 0 uses the SAM default, group 1 overrides it
SGD_KW = dict(momentum=0.9, weight_decay=5e-3)


def _data(dtype: torch.dtype = torch.float64, n: int = 16) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=gen, dtype=dtype), torch.randint(0, 3, (n,), generator=gen)


def _mlp(dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _bn_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8),
        nn.BatchNorm1d(8, momentum=None), nn.ReLU(), nn.Linear(8, 3),
    )  # fmt: skip


def _two_groups(model: nn.Sequential) -> list[dict]:
    return [
        {"params": model[0].parameters()},
        {"params": model[2].parameters(), "lr": LR[1], "rho": RHO[1]},
    ]


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(model(x), y)


def _sam_steps(model: nn.Module, sam: SAM, x: Tensor, y: Tensor, steps: int) -> None:
    for _ in range(steps):
        _loss(model, x, y).backward()
        sam.first_step(zero_grad=True)
        with frozen_bn_stats(model):
            _loss(model, x, y).backward()
        sam.second_step(zero_grad=True)


def _reference(
    model: nn.Sequential, x: Tensor, y: Tensor, steps: int, base: str, adaptive: bool
) -> dict[str, Tensor]:
    """SAM/ASAM + SGD(momentum, weight decay) or Adam, written out functionally."""
    w = {n: p.detach().clone() for n, p in model.named_parameters()}
    group = {n: 0 if n.startswith("0.") else 1 for n in w}
    grad_fn = grad(lambda params: F.cross_entropy(functional_call(model, params, (x,)), y))
    m = {n: torch.zeros_like(v) for n, v in w.items()}
    v = {n: torch.zeros_like(t) for n, t in w.items()}
    b1, b2, adam_eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        g = grad_fn(w)
        t_w = {n: w[n].abs() if adaptive else torch.ones_like(w[n]) for n in w}
        norm = torch.sqrt(sum(((t_w[n] * g[n]) ** 2).sum() for n in w))
        g_adv = grad_fn({n: w[n] + RHO[group[n]] * t_w[n] ** 2 * g[n] / (norm + 1e-12) for n in w})
        for n in w:
            lr = LR[group[n]]
            if base == "sgd":
                d = g_adv[n] + SGD_KW["weight_decay"] * w[n]
                m[n] = SGD_KW["momentum"] * m[n] + d
                w[n] = w[n] - lr * m[n]
            else:
                m[n] = b1 * m[n] + (1 - b1) * g_adv[n]
                v[n] = b2 * v[n] + (1 - b2) * g_adv[n] ** 2
                m_hat, v_hat = m[n] / (1 - b1**t), v[n] / (1 - b2**t)
                w[n] = w[n] - lr * m_hat / (v_hat.sqrt() + adam_eps)
    return w


def _make_sam(model: nn.Sequential, base: str, adaptive: bool, **kw) -> SAM:
    if base == "sgd":
        return SAM(_two_groups(model), torch.optim.SGD, RHO[0], adaptive, lr=LR[0], **SGD_KW, **kw)
    return SAM(_two_groups(model), torch.optim.Adam, RHO[0], adaptive, lr=LR[0], **kw)


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_matches_independent_reference(base: str, adaptive: bool) -> None:
    x, y = _data()
    model = _mlp()
    expected = _reference(copy.deepcopy(model), x, y, 5, base, adaptive)
    _sam_steps(model, _make_sam(model, base, adaptive), x, y, 5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_step_closure_equals_first_second_step(base: str) -> None:
    x, y = _data()
    model_a, model_b = _mlp(), _mlp()
    _sam_steps(model_a, _make_sam(model_a, base, False), x, y, 4)
    sam_b = _make_sam(model_b, base, False)

    def closure() -> Tensor:
        loss = _loss(model_b, x, y)
        loss.backward()
        return loss

    for _ in range(4):
        _loss(model_b, x, y).backward()
        loss = sam_b.step(closure)
        assert isinstance(loss, Tensor) and loss.requires_grad
        sam_b.zero_grad()
    for p_a, p_b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p_a, p_b)


def test_step_closure_freezes_bn_when_model_given() -> None:
    x, y = _data(torch.float32)
    model = _bn_mlp()
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1, model=model)
    for step in range(1, 4):
        _loss(model, x, y).backward()
        sam.step(lambda: _loss(model, x, y).backward())
        sam.zero_grad()
        assert int(model[1].num_batches_tracked) == step  # first pass only


def test_param_groups_shared_and_hyperparameters() -> None:
    model = _mlp()
    sam = _make_sam(model, "sgd", False)
    assert sam.param_groups is sam.base_optimizer.param_groups
    assert sam.state is sam.base_optimizer.state
    assert [g["rho"] for g in sam.param_groups] == list(RHO)
    assert [g["lr"] for g in sam.param_groups] == list(LR)
    assert all(g["momentum"] == 0.9 and g["adaptive"] is False for g in sam.param_groups)
    extra = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    sam.add_param_group({"params": [extra], "lr": 0.5})
    assert sam.base_optimizer.param_groups[-1]["params"] == [extra]
    assert sam.base_optimizer.param_groups[-1]["momentum"] == 0.9
    assert sam.base_optimizer.param_groups[-1]["rho"] == RHO[0]


@pytest.mark.parametrize(
    "make_scheduler",
    [
        lambda opt: MultiStepLR(opt, milestones=[1, 3], gamma=0.1),
        lambda opt: CosineAnnealingLR(opt, T_max=4),
        lambda opt: LambdaLR(opt, lambda epoch: 0.5**epoch),
    ],
    ids=["multistep", "cosine", "lambda"],
)
def test_lr_scheduler_drives_base_optimizer(make_scheduler: Callable) -> None:
    x, y = _data()
    model = _mlp()
    sam = _make_sam(model, "sgd", False)
    plain = torch.optim.SGD(_two_groups(_mlp()), lr=LR[0])
    sam_sched, plain_sched = make_scheduler(sam), make_scheduler(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()"
        for _ in range(4):
            _sam_steps(model, sam, x, y, 1)
            plain.step()
            sam_sched.step()
            plain_sched.step()
            base_lrs = [g["lr"] for g in sam.base_optimizer.param_groups]
            assert base_lrs == [g["lr"] for g in plain.param_groups]
    assert base_lrs != list(LR)


def test_rho_must_be_positive() -> None:
    params = list(_mlp().parameters())
    for rho in (0.0, -0.1):
        with pytest.raises(ValueError, match="rho"):
            SAM(params, torch.optim.SGD, rho=rho, lr=0.1)
    with pytest.raises(ValueError, match="rho"):
        SAM([{"params": params, "rho": 0.0}], torch.optim.SGD, lr=0.1)


def test_protocol_errors() -> None:
    x, y = _data()
    model = _mlp()
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    _loss(model, x, y).backward()
    with pytest.raises(RuntimeError, match="two forward/backward"):
        sam.step()
    with pytest.raises(RuntimeError, match="first_step"):
        sam.second_step()
    sam.first_step()
    with pytest.raises(RuntimeError, match="twice"):
        sam.first_step()
    sam.step()  # no closure while a first_step is in progress: acts as second_step()


def test_extra_memory_is_one_copy_of_the_weights() -> None:
    x, y = _data()
    model = _mlp()
    unused = nn.Parameter(torch.ones(7, dtype=torch.float64))  # no gradient: not saved
    sam = SAM([*model.parameters(), unused], torch.optim.SGD, lr=0.1, momentum=0.9)
    w0 = [p.detach().clone() for p in model.parameters()]
    _loss(model, x, y).backward()
    sam.first_step(zero_grad=True)
    saved = sam._saved
    assert saved is not None
    assert sum(t.numel() for _, t in saved) == sum(p.numel() for p in model.parameters())
    assert all(torch.equal(t, w) for (_, t), w in zip(saved, w0, strict=True))
    assert not any(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))
    assert len(sam.state) == 0 and sam.state_dict()["state"] == {}
    _loss(model, x, y).backward()
    sam.second_step()
    assert sam._saved is None
    assert torch.equal(unused, torch.ones(7, dtype=torch.float64))


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_nonfinite_gradient_norm_does_not_perturb(bad: float) -> None:
    model = _mlp()
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    w0 = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model[0].weight.grad[0, 0] = bad
    sam.first_step(zero_grad=True)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    sam.second_step()  # the step was still in progress
    for p, w in zip(model.parameters(), w0, strict=True):
        torch.testing.assert_close(p.detach(), w - 0.1)


def _scaler_run(
    base: str, scaler: torch.amp.GradScaler | None, steps: int = 4
) -> tuple[nn.Module, SAM]:
    x, y = _data(torch.float32)
    model = _mlp(torch.float32)
    sam = _make_sam(model, base, False)
    for _ in range(steps):
        loss = _loss(model, x, y)
        (scaler.scale(loss) if scaler else loss).backward()
        sam.first_step(zero_grad=True)
        loss2 = _loss(model, x, y)
        if scaler:
            scaler.scale(loss2).backward()
            scaler.step(sam)
            scaler.update()
        else:
            loss2.backward()
            sam.step()
        sam.zero_grad()
    return model, sam


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_grad_scaler_matches_plain_sam(base: str) -> None:
    plain, _ = _scaler_run(base, None)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in particular no FutureWarning about grad_scaler=
        scaled, _ = _scaler_run(base, scaler)
    assert scaler.get_scale() == 2.0**10
    for p, q in zip(plain.parameters(), scaled.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_grad_scaler_unscale_before_step_for_clipping() -> None:
    plain, _ = _scaler_run("sgd", None, steps=1)
    x, y = _data(torch.float32)
    model = _mlp(torch.float32)
    sam = _make_sam(model, "sgd", False)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    scaler.scale(_loss(model, x, y)).backward()
    sam.first_step(zero_grad=True)
    scaler.scale(_loss(model, x, y)).backward()
    scaler.unscale_(sam)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e6)  # no-op clip
    scaler.step(sam)
    scaler.update()
    for p, q in zip(plain.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_grad_scaler_skipped_step_restores_weights(bad: float) -> None:
    x, y = _data(torch.float32)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    model, sam = _scaler_run("sgd", scaler, steps=1)  # momentum buffers exist now
    w0 = [p.detach().clone() for p in model.parameters()]
    state0 = copy.deepcopy(sam.state_dict())
    scaler.scale(_loss(model, x, y)).backward()
    sam.first_step(zero_grad=True)
    assert not any(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))
    scaler.scale(_loss(model, x, y)).backward()
    model[2].weight.grad[0, 0] = bad
    scaler.step(sam)
    scaler.update()
    sam.zero_grad()
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))
    state = sam.state_dict()["state"]
    assert all(torch.equal(state[i]["momentum_buffer"], s["momentum_buffer"])
               for i, s in state0["state"].items())  # fmt: skip
    assert scaler.get_scale() == 2.0**9
    # The next iteration is a normal step again.
    scaler.scale(_loss(model, x, y)).backward()
    sam.first_step(zero_grad=True)
    scaler.scale(_loss(model, x, y)).backward()
    scaler.step(sam)
    scaler.update()
    assert not any(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))
    assert scaler.get_scale() == 2.0**9


def test_documented_fp16_recipe_on_cpu() -> None:
    x, y = _data(torch.float32, n=64)
    model = _bn_mlp()
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu")
    losses = []
    for _ in range(8):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = _loss(model, x, y)
        scaler.scale(loss).backward()
        sam.first_step(zero_grad=True)
        with frozen_bn_stats(model), torch.autocast("cpu", dtype=torch.float16):
            loss2 = _loss(model, x, y)
        scaler.scale(loss2).backward()
        scaler.step(sam)
        scaler.update()
        sam.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert int(model[1].num_batches_tracked) == 8
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bf16_autocast_step() -> None:
    x, y = _data(torch.float32, n=64)
    model = _bn_mlp()
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, model=model)

    def closure() -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = _loss(model, x, y)
        loss.backward()
        return loss

    losses = []
    for _ in range(8):
        losses.append(closure().item())
        sam.step(closure)
        sam.zero_grad()
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_resume_is_bitwise_identical(base: str) -> None:
    x, y = _data(torch.float32)

    def make(seed: int) -> tuple[nn.Sequential, SAM, MultiStepLR]:
        model = _bn_mlp(seed)
        if base == "sgd":
            sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True)
        else:
            sam = SAM(model.parameters(), torch.optim.Adam, rho=0.5, adaptive=True, lr=1e-2)
        return model, sam, MultiStepLR(sam, milestones=[4], gamma=0.1)

    def train(model: nn.Module, sam: SAM, sched: MultiStepLR, steps: int) -> None:
        for _ in range(steps):
            _sam_steps(model, sam, x, y, 1)
            sched.step()

    model_a, sam_a, sched_a = make(0)
    train(model_a, sam_a, sched_a, 3)
    buf = io.BytesIO()
    state = {"model": model_a.state_dict(), "opt": sam_a.state_dict()}
    torch.save({**state, "sched": sched_a.state_dict()}, buf)
    train(model_a, sam_a, sched_a, 3)

    model_b, sam_b, sched_b = make(1)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    assert ckpt["opt"]["param_groups"][0]["rho"] == sam_a.param_groups[0]["rho"]
    assert ckpt["opt"]["param_groups"][0]["adaptive"] == (base == "adam")
    model_b.load_state_dict(ckpt["model"])
    sam_b.load_state_dict(ckpt["opt"])
    sched_b.load_state_dict(ckpt["sched"])
    assert sam_b.param_groups is sam_b.base_optimizer.param_groups
    assert sam_b.state is sam_b.base_optimizer.state
    train(model_b, sam_b, sched_b, 3)
    assert sam_b.param_groups[0]["lr"] == sam_a.param_groups[0]["lr"]
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(a, sd_b[name]) for name, a in sd_a.items())


def test_frozen_bn_stats_freezes_and_restores() -> None:
    x = torch.randn(32, 5)
    model = _bn_mlp().train()
    expected = copy.deepcopy(model)(x)
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    before = copy.deepcopy([m.state_dict() for m in bn])
    with frozen_bn_stats(model):
        out = model(x)
        with frozen_bn_stats(model):  # nesting
            model(x)
        model(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    for m, sd in zip(bn, before, strict=True):
        assert m.track_running_stats
        assert all(torch.equal(v, sd[k]) for k, v in m.state_dict().items())
    model(x)
    for m, sd in zip(bn, before, strict=True):
        assert int(m.num_batches_tracked) == 1
        assert not torch.equal(m.running_mean, sd["running_mean"])
        assert not torch.equal(m.running_var, sd["running_var"])


def test_frozen_bn_stats_restores_on_exception_and_keeps_eval_mode() -> None:
    x = torch.randn(32, 5)
    model = _bn_mlp()
    model(x)  # non-trivial running statistics
    with pytest.raises(KeyError), frozen_bn_stats(model):
        raise KeyError
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    model.eval()
    expected = model(x)
    with frozen_bn_stats(model):
        assert torch.equal(model(x), expected)


# --- BatchNorm statistics with ``model=``: frozen from first_step until the step ends, in every
# calling style, so they are updated by the clean pass only.


def _bn_layers(model: nn.Module) -> list[nn.BatchNorm1d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]


def _frozen(model: nn.Module) -> list[bool]:
    return [not m.track_running_stats for m in _bn_layers(model)]


def _make_bn_optimizer(kind: str, net: nn.Module, **kw) -> SAM:
    """``kind`` over ``net``'s parameters; ``kw`` (``model=``) goes to the optimizer."""
    from samat.weight import ESAM, LookSAM

    if kind == "esam":  # its own first_step saves the weights (stochastic perturbation)
        generator = torch.Generator().manual_seed(0)
        return ESAM(net.parameters(), torch.optim.SGD, beta=0.5, generator=generator,
                    lr=0.1, momentum=0.9, **kw)
    if kind == "looksam":  # SAM steps (first_step) alternate with one-pass steps
        return LookSAM(net.parameters(), torch.optim.SGD, k=2, lr=0.1, momentum=0.9, **kw)
    return SAM(net.parameters(), torch.optim.SGD, rho=0.5, lr=0.1, momentum=0.9, **kw)


def _step(sam: SAM, model: nn.Module, x: Tensor, y: Tensor, how: str,
          scaler: torch.amp.GradScaler | None) -> None:
    """One step in calling style ``how``, checking the statistics are frozen between the
    passes."""
    loss = _loss(model, x, y)
    (scaler.scale(loss) if scaler else loss).backward()
    if getattr(sam, "sam_step_due", True) is False:  # a LookSAM reuse step: one pass
        scaler.step(sam) if scaler else sam.step()
    elif how == "closure":
        def closure() -> Tensor:
            assert all(_frozen(model))
            loss = _loss(model, x, y)
            loss.backward()
            return loss

        sam.step(closure)
    else:
        sam.first_step(zero_grad=True)
        assert all(_frozen(model))
        loss = _loss(model, x, y)
        (scaler.scale(loss) if scaler else loss).backward()
        assert all(_frozen(model))
        if how == "second_step":
            sam.second_step()
        elif scaler is not None:
            scaler.step(sam)
        else:
            sam.step()
    if scaler is not None:
        scaler.update()
    sam.zero_grad()
    assert not any(_frozen(model))


@pytest.mark.parametrize(("kind", "how"), [
    ("sam", "second_step"), ("sam", "step"), ("sam", "scaler"), ("sam", "closure"),
    ("esam", "second_step"), ("esam", "scaler"), ("looksam", "step"), ("looksam", "closure"),
])
def test_model_bn_stats_updated_once_per_step_at_the_clean_weights(kind: str, how: str) -> None:
    steps = 4
    model = _bn_mlp()
    sam = _make_bn_optimizer(kind, model, model=model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10) if how == "scaler" else None
    reference = copy.deepcopy(model)  # the hand loop: one forward per step, clean weights
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = 2 * torch.randn(16, 5, generator=gen) + 1, torch.randint(0, 3, (16,), generator=gen)
        with torch.no_grad():
            for p_ref, p in zip(reference.parameters(), model.parameters(), strict=True):
                p_ref.copy_(p)
        reference(x)
        _step(sam, model, x, y, how, scaler)
    for bn, expected in zip(_bn_layers(model), _bn_layers(reference), strict=True):
        assert int(bn.num_batches_tracked) == int(expected.num_batches_tracked) == steps
        torch.testing.assert_close(bn.running_mean, expected.running_mean)
        torch.testing.assert_close(bn.running_var, expected.running_var)


def test_without_model_bn_stats_are_left_to_the_caller() -> None:
    model = _bn_mlp()
    sam = _make_bn_optimizer("sam", model)
    x, y = _data(torch.float32)
    _loss(model, x, y).backward()
    sam.first_step(zero_grad=True)
    assert not any(_frozen(model))
    _loss(model, x, y).backward()
    sam.second_step()
    assert [int(m.num_batches_tracked) for m in _bn_layers(model)] == [2, 2]


def test_grad_scaler_skipped_step_unfreezes_bn() -> None:
    model = _bn_mlp()
    sam = _make_bn_optimizer("sam", model, model=model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    x, y = _data(torch.float32)
    w0 = [p.detach().clone() for p in model.parameters()]
    scaler.scale(_loss(model, x, y)).backward()
    sam.first_step(zero_grad=True)
    scaler.scale(_loss(model, x, y)).backward()
    model[0].weight.grad[0, 0] = float("inf")
    scaler.step(sam)
    scaler.update()
    assert scaler.get_scale() == 2.0**9  # the step was skipped
    assert not any(_frozen(model))
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))
    assert [int(m.num_batches_tracked) for m in _bn_layers(model)] == [1, 1]


def test_closure_error_abandons_the_step_and_unfreezes_bn() -> None:
    model = _bn_mlp()
    sam = _make_bn_optimizer("sam", model, model=model)
    x, y = _data(torch.float32)
    w0 = [p.detach().clone() for p in model.parameters()]

    def closure() -> Tensor:
        assert all(_frozen(model))
        raise KeyError("data loader broke")

    _loss(model, x, y).backward()
    with pytest.raises(KeyError, match="data loader broke"):
        sam.step(closure)
    assert not any(_frozen(model))
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))
    model(x)
    assert [int(m.num_batches_tracked) for m in _bn_layers(model)] == [2, 2]
    sam.zero_grad()
    _step(sam, model, x, y, "second_step", None)  # no step left in progress


def test_bn_freeze_nests_with_the_callers_own() -> None:
    """SAM unfreezes what it froze, once: not a caller's enclosing freeze, and a caller's inner
    freeze (the samat.weight pattern) does not end SAM's early."""
    model = _bn_mlp()
    sam = _make_bn_optimizer("sam", model, model=model)
    x, y = _data(torch.float32)
    with frozen_bn_stats(model):
        _loss(model, x, y).backward()
        sam.first_step(zero_grad=True)
        _loss(model, x, y).backward()
        sam.second_step()
        assert all(_frozen(model))  # still the caller's
    assert not any(_frozen(model))
    _loss(model, x, y).backward()
    sam.first_step(zero_grad=True)
    with frozen_bn_stats(model):
        _loss(model, x, y).backward()
    assert all(_frozen(model))  # still SAM's until the step ends
    model(x)
    sam.step()
    assert not any(_frozen(model))
    assert [int(m.num_batches_tracked) for m in _bn_layers(model)] == [1, 1]
