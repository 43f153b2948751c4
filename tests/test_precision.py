"""Mixed precision and speed switches: bf16/fp16 training steps, the GradScaler route, skipped
steps, channels_last, torch.compile, and their recipe validation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from samat import runner as run_module
from samat.batchnorm import frozen_bn_stats
from samat.data import to_device, train_loader
from samat.errors import SamatError
from samat.precision import Autocast, check_precision
from samat.recipe import recipe_from_dict
from samat.train import Trainer
from samat.weight import PlainStep, SAMStep

pytestmark = pytest.mark.usefixtures("fixture_task")

RECIPE = {
    "task": {"name": "fixture", "n_train": 256, "n_test": 128},
    "seed": 3,
    "device": "cpu",
    "train": {
        "epochs": 2,
        "batch_size": 64,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "weight_perturbation": {"name": "sam", "rho": 0.1},
    },
}
PGD = {"name": "pgd", "norm": "linf", "eps": 0.1, "alpha": 0.05, "steps": 2,
       "random_start": False}


def trainer_for(task: dict[str, object] | None = None, **train: object) -> Trainer:
    """The trainer of RECIPE with ``task`` and ``train`` settings changed."""
    data = copy.deepcopy(RECIPE)
    data["task"].update(task or {})
    data["train"].update(train)
    _, trainer = run_module.prepare(recipe_from_dict(data))
    return trainer


def first_batch(trainer: Trainer, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    loader = train_loader(trainer.task, trainer.train_set, trainer.cfg.batch_size,
                          trainer.recipe.seed, epoch, 0)
    return next(iter(loader))


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm statistics), copied."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    """Bit-identical parameters and buffers."""
    ours, theirs = state(a), state(b)
    assert list(ours) == list(theirs)
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name


def test_bf16_trains_on_cpu_with_bf16_forwards() -> None:
    trainer = trainer_for(precision="bf16", weight_perturbation={"name": "sam", "rho": 0.1},
                          input_perturbation=PGD, eval_every=0)  # evaluation runs in float32
    dtypes: list[torch.dtype] = []
    trainer.model.out.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    before = state(trainer.model)
    trainer.fit()
    assert len(dtypes) == trainer.total_steps * 4  # PGD's 2 and both SAM passes' forwards
    assert set(dtypes) == {torch.bfloat16}
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    assert all(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in trainer.progress.history)


def _hand_fp16_sam(model: nn.Module, batches: list, loss_fn) -> None:
    """The documented order: scale, backward, first_step, scale, backward, scaler.step, update
    (forwards under autocast, loss in float32)."""
    sam = SAMStep(model.parameters(), torch.optim.SGD, {"lr": 0.1, "momentum": 0.9},
                  rho=0.1).optimizer
    scaler = torch.amp.GradScaler("cpu")
    for x, y in batches:
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(x)
        scaler.scale(loss_fn(out.float(), y)).backward()
        sam.first_step(zero_grad=True)
        with frozen_bn_stats(model), torch.autocast("cpu", dtype=torch.float16):
            out = model(x)
        scaler.scale(loss_fn(out.float(), y)).backward()
        scaler.step(sam)
        scaler.update()
        sam.zero_grad()


def _hand_fp16_at(model: nn.Module, batches: list, loss_fn, trainer: Trainer) -> None:
    """PGD on the autocast model, then scale, backward, scaler.step(sgd), update."""
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu")
    half = Autocast(model, "cpu", torch.float16)
    for x, y in batches:
        x_adv = trainer.input.perturb(half, loss_fn, x, y)
        sgd.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(x_adv)
        scaler.scale(loss_fn(out.float(), y)).backward()
        scaler.step(sgd)
        scaler.update()


@pytest.mark.parametrize("method", ["sam", "at"])
def test_fp16_gradscaler_route_equals_the_hand_order(method: str) -> None:
    train = ({"weight_perturbation": {"name": "sam", "rho": 0.1}} if method == "sam" else
             {"weight_perturbation": {"name": "none"}, "input_perturbation": PGD})
    reference = trainer_for(**train)  # fp32 trainer: same init and data, trained by hand
    trainer = trainer_for(precision="fp16", **train)
    assert trainer.weight.scaler is trainer.scaler is not None
    reference.model.load_state_dict(trainer.model.state_dict())
    trainer.train_set = torch.utils.data.TensorDataset(*first_batch(trainer))  # 1 batch/epoch
    trainer.steps_per_epoch, trainer.total_steps = 1, 2
    batches = [first_batch(trainer, epoch) for epoch in range(2)]  # the trainer's two steps
    dtypes: set[torch.dtype] = set()
    trainer.model.out.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
    trainer.cfg.eval_every = 0
    before = state(trainer.model)
    trainer.fit()
    assert dtypes == {torch.float16}
    if method == "sam":
        _hand_fp16_sam(reference.model, batches, reference.task.loss)
    else:
        _hand_fp16_at(reference.model, batches, reference.task.loss, reference)
    assert_same_state(trainer.model, reference.model)
    assert not torch.equal(trainer.model.hidden.weight, before["hidden.weight"])
    assert trainer.scaler.get_scale() == 65536.0


@pytest.mark.parametrize("step_cls", [SAMStep, PlainStep])
def test_an_overflowing_fp16_step_is_skipped_and_restores_the_weights(step_cls: type) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    step = step_cls(model.parameters(), torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})
    step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # loss * scale = inf
    weights = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    half = Autocast(model, "cpu", torch.float16)
    step.step(half, nn.functional.cross_entropy, x, y)
    step.scaler.update()
    for p, w in zip(model.parameters(), weights, strict=True):
        assert torch.equal(p, w)
    assert step.optimizer.state_dict()["state"] == {}  # no momentum buffer: no step was taken
    assert step.scaler.get_scale() == 2.0**126


def test_fp16_scaler_state_is_checkpointed_and_resume_is_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    data = copy.deepcopy(RECIPE)
    data["train"].update(precision="fp16", epochs=3, checkpoint_every=3)
    recipe_path = tmp_path / "fp16.yaml"
    recipe_path.write_text(yaml.safe_dump(data))
    run_module.run(recipe_path, [f"output_dir={tmp_path / 'full'}"])
    saved = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["scaler"]["scale"] == 65536.0 and "_growth_tracker" in saved["scaler"]

    original_save = Trainer.save

    def crash(self: Trainer, path: Path, progress: dict | None = None) -> None:
        self.scaler.update(1024.0)  # a scale that must come back on resume
        original_save(self, path, progress)
        if self.progress.step == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        run_module.run(recipe_path, [f"output_dir={tmp_path / 'crashed'}"])
    monkeypatch.setattr(Trainer, "save", original_save)
    loaded: list[float] = []
    original_load = Trainer.load

    def load(self: Trainer, path: Path) -> None:
        original_load(self, path)
        loaded.append(self.scaler.get_scale())

    monkeypatch.setattr(Trainer, "load", load)
    run_module.run(recipe_path, [f"output_dir={tmp_path / 'crashed'}"], resume=True)
    assert loaded == [1024.0]


def test_channels_last_is_a_no_op_on_a_model_of_vectors_and_converts_4d_inputs() -> None:
    plain, fast = trainer_for(), trainer_for(channels_last=True)
    plain.fit()
    fast.fit()
    assert_same_state(plain.model, fast.model)
    images = to_device(torch.rand(2, 3, 5, 5), torch.device("cpu"), channels_last=True)
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert to_device(torch.rand(2, 3), torch.device("cpu"), channels_last=True).is_contiguous()
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_trains_sam_and_checkpoints_the_plain_module(tmp_path: Path) -> None:
    task = {"batchnorm": False}  # compiling BatchNorm's SAM passes takes half a minute
    plain, compiled = trainer_for(task), trainer_for(task, compile=True)
    assert compiled.forward_model is not compiled.model
    plain.fit()
    compiled.fit(tmp_path / "last.pt")
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    assert list(saved) == list(plain.model.state_dict())  # no _orig_mod. prefix
    assert list(saved) == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    for name, tensor in plain.model.state_dict().items():
        torch.testing.assert_close(saved[name], tensor, msg=name)


@pytest.mark.parametrize(("change", "message"), [
    ({"precision": "fp8"}, "train.precision: expected one of fp32, bf16, fp16, got 'fp8'"),
    ({"channels_last": "yes"}, "train.channels_last: expected true or false"),
    ({"compile": 1}, "train.compile: expected true or false"),
    ({"sync_bn": None}, "train.sync_bn: expected true or false"),
    ({"weight_perturbation": {"name": "sam", "ascent": "local"}},
     "train.weight_perturbation: ascent must be one of global, replica, got 'local'"),
    ({"weight_perturbation": {"name": "asam", "ascent": 1}},
     "train.weight_perturbation: ascent must be one of global, replica, got 1"),
])
def test_bad_precision_and_speed_settings_name_their_key(change: dict, message: str) -> None:
    with pytest.raises(SamatError, match=message.replace("(", r"\(")):
        trainer_for(**change)


def test_precision_unsupported_on_the_device_is_a_one_line_error() -> None:
    with pytest.raises(SamatError, match="train.precision: bf16 is supported on cpu and cuda"):
        check_precision("bf16", torch.device("mps"))
    check_precision("fp16", torch.device("cpu"))  # CPU autocast and GradScaler support fp16
