"""The plugin contract of :mod:`samat.interfaces` as checks: each raises ``AssertionError``
naming what an object does wrong (samat's tests/test_contracts.py runs them on every registered
entry; a plugin's tests can call them on its own)."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from samat.interfaces import (
    Attack,
    AttackMismatch,
    InputPerturbation,
    Measure,
    NonFiniteStep,
    StepResult,
    Task,
    TextAttack,
    WeightPerturbation,
)
from samat.probe import make_probe


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _items(dataset: Any, start: int, stop: int) -> list[Any]:
    return [dataset[i] for i in range(start, min(stop, len(dataset)))]


def sample_batch(task: Task, split: str = "eval", batch_size: int = 4,
                 start: int = 0) -> tuple[Any, Tensor]:
    """Items ``start .. start + batch_size`` of ``task``'s ``split`` (``train``/``eval``)
    dataset, collated as samat's loaders collate them."""
    dataset = task.train_dataset() if split == "train" else task.eval_dataset()
    return (task.collate_fn or default_collate)(_items(dataset, start, start + batch_size))


def model_state(model: nn.Module) -> dict[str, Tensor]:
    """A copy of ``model``'s parameters and buffers (BatchNorm statistics)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(model: nn.Module, before: dict[str, Tensor]) -> list[str]:
    return [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]


def _no_grads(model: nn.Module, what: str) -> None:
    written = [n for n, p in model.named_parameters() if p.grad is not None]
    _expect(not written, f"{what} left .grad on parameters {written[:3]}")


def _json(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{what} is not JSON-serialisable: {exc}") from None


def _check_described(described: Any, what: str) -> dict[str, Any]:
    described = _json(described, f"{what}.describe()")
    _expect(isinstance(described, dict) and isinstance(described.get("name"), str)
            and described["name"] != "", f"{what}.describe() must hold a 'name': {described}")
    return described


def _check_inside(x: Tensor, x_adv: Tensor, task: Task, described: dict[str, Any],
                  what: str) -> None:
    """``x_adv`` has ``x``'s shape, dtype and device, lies in the task's bounds, changes
    nothing the task's mask protects, and stays in the ``eps`` ball ``described`` declares
    (``norm``: ``linf``, the default, or ``l2``)."""
    _expect(isinstance(x_adv, Tensor), f"{what} returned {type(x_adv).__name__}, not a tensor")
    got = (tuple(x_adv.shape), x_adv.dtype, x_adv.device)
    _expect(got == (tuple(x.shape), x.dtype, x.device),
            f"{what} returned shape/dtype/device {got}, the input has "
            f"{(tuple(x.shape), x.dtype, x.device)}")
    _expect(bool(torch.isfinite(x_adv).all()), f"{what} returned non-finite inputs")
    if task.input_bounds is not None:
        low, high = task.input_bounds
        _expect(float(x_adv.min()) >= low and float(x_adv.max()) <= high,
                f"{what} left the bounds {task.input_bounds}: "
                f"[{float(x_adv.min())}, {float(x_adv.max())}]")
    delta = (x_adv - x).detach()
    mask = task.input_mask()
    if mask is not None:
        protected = (1 - mask.to(delta)).expand_as(delta).bool()
        _expect(not bool(delta[protected].any()), f"{what} changed inputs the task's mask "
                "protects")
    eps = described.get("eps")
    if isinstance(eps, int | float) and not isinstance(eps, bool):
        norm = described.get("norm", "linf")
        _expect(norm in ("linf", "l2"), f"{what}: cannot check the eps ball of norm {norm!r}")
        flat = delta.flatten(1).double()
        size = flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)
        _expect(float(size.max()) <= eps + 1e-5,
                f"{what} left its {norm} eps={eps} ball: {float(size.max())}")


def check_task(task: Task, batch_size: int = 4) -> None:
    """Raise ``AssertionError`` unless ``task`` keeps the :class:`Task` contract on its first
    items: datasets of ``(x, y)`` pairs, inputs in ``input_bounds``, a mask broadcastable to a
    batch, a model that runs on a collated batch, a finite scalar ``loss`` with finite
    gradients, ``example_losses`` of shape ``[batch]``, a metric whose ``compute()`` holds
    ``task.metric`` (and whose :meth:`Metric.state` merges), JSON-serialisable ``describe()``
    and ``report()``."""
    bounds = task.input_bounds
    _expect(bounds is None or (len(bounds) == 2 and bounds[0] < bounds[1]),
            f"input_bounds must be None or (low, high), got {bounds!r}")
    batches = {}
    for split in ("train", "eval"):
        dataset = task.train_dataset() if split == "train" else task.eval_dataset()
        _expect(len(dataset) > 0, f"the {split} dataset is empty")
        item = dataset[0]
        _expect(isinstance(item, tuple | list) and len(item) == 2,
                f"the {split} dataset yields {type(item).__name__}, not (x, y) pairs")
        x, y = batches[split] = sample_batch(task, split, batch_size)
        if bounds is not None:
            _expect(isinstance(x, Tensor), f"{split} inputs are {type(x).__name__}: bounded "
                    "inputs must be tensors")
            _expect(float(x.min()) >= bounds[0] and float(x.max()) <= bounds[1],
                    f"{split} inputs lie in [{float(x.min())}, {float(x.max())}], outside "
                    f"input_bounds {bounds}")
    x, y = batches["train"]
    mask = task.input_mask()
    if mask is not None:
        try:
            fits = torch.broadcast_shapes(mask.shape, x.shape) == x.shape
        except RuntimeError:
            fits = False
        _expect(isinstance(x, Tensor) and fits,
                f"input_mask() of shape {tuple(mask.shape)} does not broadcast to a batch")
        _expect(bool(((mask == 0) | (mask == 1)).all()), "input_mask() must hold 0s and 1s")
    model = task.build_model()
    _expect(isinstance(model, nn.Module), f"build_model() returned {type(model).__name__}")
    model.train()
    output = model(x)
    loss = task.loss(output, y)
    _expect(isinstance(loss, Tensor) and loss.ndim == 0, f"loss is not a scalar: {loss!r}")
    _expect(bool(torch.isfinite(loss)) and loss.requires_grad,
            f"loss must be finite and differentiable, got {loss!r}")
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    _expect(bool(grads) and all(bool(torch.isfinite(g).all()) for g in grads),
            "the loss gives no (finite) gradient to the model's parameters")
    _expect(any(bool(g.any()) for g in grads), "the loss's gradient is zero everywhere")
    losses = task.example_losses(output.detach() if isinstance(output, Tensor) else output, y)
    _expect(tuple(losses.shape) == (len(y),) and bool(torch.isfinite(losses).all()),
            f"example_losses must be {len(y)} finite values, got shape {tuple(losses.shape)}")
    model.eval()
    eval_batches = [batches["eval"], sample_batch(task, "eval", batch_size, batch_size)]
    values = task.evaluate(model, eval_batches[:1])
    _expect(isinstance(values.get(task.metric), int | float) and math.isfinite(values[task.metric]),
            f"evaluate() must hold a finite '{task.metric}' (task.metric), got {values}")
    whole, parts = task.new_metric(), [task.new_metric(), task.new_metric()]
    with torch.no_grad():
        for metric, (xb, yb) in zip(parts, eval_batches, strict=True):
            output = model(xb)
            metric.update(output, yb)
            whole.update(output, yb)
    _json(whole.compute(), "the metric's compute()")
    _expect(task.metric in whole.compute(), f"new_metric().compute() lacks '{task.metric}'")
    states = [m.state() for m in parts]
    if states[0] is not None:  # mergeable: the sum of the parts' states is the whole's
        parts[0].load_state([a + b for a, b in zip(*states, strict=True)])
        _expect(parts[0].compute() == whole.compute(),
                "Metric.state() does not merge: the summed states of two batches compute "
                f"{parts[0].compute()}, both batches {whole.compute()}")
    _json(task.describe(), "describe()")
    _expect(isinstance(task.report(model), dict), "report() must return a dict")
    _json(task.report(model), "report()")


def check_input_perturbation(perturbation: InputPerturbation, task: Task, batch_size: int = 8,
                             seed: int = 0) -> None:
    """Raise ``AssertionError`` unless ``perturbation`` keeps the :class:`InputPerturbation`
    contract on a training batch of ``task``'s model in train mode: a detached tensor of the
    input's shape, dtype and device, inside the bounds, the mask and the ``eps`` ball its
    ``describe()`` declares; the same under the same seed; no ``.grad`` on parameters; weights,
    BatchNorm statistics and train mode untouched; ``describe()`` JSON with a ``name``."""
    what = f"input perturbation {type(perturbation).__name__}"
    described = _check_described(perturbation.describe(), what)
    model = task.build_model()
    model.train()
    x, y = sample_batch(task, "train", batch_size)
    before = model_state(model)
    torch.manual_seed(seed)
    x_adv = perturbation.perturb(model, task.loss, x, y)
    _check_inside(x, x_adv, task, described, what)
    _expect(not x_adv.requires_grad, f"{what} returned a tensor that requires grad")
    _expect(model.training, f"{what} left the model in eval mode")
    _no_grads(model, what)
    changed = _changed(model, before)
    _expect(not changed, f"{what} changed the model's weights or BatchNorm statistics {changed}")
    torch.manual_seed(seed)
    _expect(torch.equal(perturbation.perturb(model, task.loss, x, y), x_adv),
            f"{what} differs between two calls under the same torch seed")


def _predicted(model: nn.Module, x: Any, y: Tensor) -> tuple[Any, Tensor]:
    """``(x, y)`` with class labels ``y`` replaced by the model's predictions, so that attacks
    which leave misclassified examples alone attack every example of an untrained model."""
    if y.ndim != 1 or y.is_floating_point():
        return x, y
    with torch.no_grad():
        training = [module.training for module in model.modules()]
        model.eval()
        output = model(x)
        for module, mode in zip(model.modules(), training, strict=True):
            module.training = mode
    if isinstance(output, Tensor) and output.ndim == 2 and len(output) == len(y):
        return x, output.argmax(1).to(y.dtype)
    return x, y


def _set_modes(model: nn.Module, mode: str) -> list[bool]:
    """Put ``model`` in ``train``, ``eval`` or ``mixed`` mode (every other submodule in eval);
    the modes of its modules."""
    model.train(mode != "eval")
    if mode == "mixed":
        for i, module in enumerate(model.modules()):
            module.training = i % 2 == 0
    return [module.training for module in model.modules()]


def check_attack(attack: Attack, model: nn.Module, task: Task, batch_size: int = 4) -> None:
    """Raise ``AssertionError`` unless ``attack`` (bound to ``model``, which ``task`` built)
    keeps the :class:`Attack` contract on an evaluation batch, called with the model in train,
    eval and mixed mode: a tensor of ``x``'s shape, dtype and device inside the bounds, mask and
    declared ``eps`` ball; every module's mode restored; no ``.grad`` on parameters; weights
    and BatchNorm statistics untouched; ``describe()`` JSON with a ``name``. Class labels are
    the model's predictions (attacks skip misclassified examples). A
    :class:`TextAttack` is called once (train mode) with ``attack_texts`` on the evaluation
    set's first ``(text, label)`` items instead, and must return a dict holding
    ``task.metric``. First of all :meth:`Attack.check` must accept the model (the attack was
    built for it), leaving it untouched."""
    what = f"attack {type(attack).__name__}"
    described = _check_described(attack.describe(), what)
    _check_checks(attack, model, task, what, refuse=None)
    text = isinstance(attack, TextAttack)
    for mode in ("train",) if text else ("train", "eval", "mixed"):
        modes = _set_modes(model, mode)
        before = model_state(model)
        if text:
            items = _items(task.eval_dataset(), 0, batch_size)
            _expect(all(isinstance(t, str) for t, _ in items),
                    f"{what} is a TextAttack: its task's items must be (text, label) pairs")
            result = attack.attack_texts([t for t, _ in items], [int(y) for _, y in items])
            _json(result, f"{what}.attack_texts()")
            value = result.get(task.metric)
            _expect(isinstance(value, int | float) and math.isfinite(value),
                    f"{what}.attack_texts() must hold a finite '{task.metric}': {result}")
        else:
            x, y = _predicted(model, *sample_batch(task, "eval", batch_size))
            _check_inside(x, attack(x, y), task, described, what)
        _expect([module.training for module in model.modules()] == modes,
                f"{what} did not restore the train/eval mode of every module (called in "
                f"{mode} mode)")
        _no_grads(model, what)
        changed = _changed(model, before)
        _expect(not changed, f"{what} changed the model's weights or BatchNorm statistics "
                f"{changed}")


def _check_checks(attack: Attack, model: nn.Module, task: Task, what: str,
                  refuse: str | None) -> AttackMismatch | None:
    """``attack.check`` on a probe of ``model`` in mixed mode: it accepts (``refuse`` None) or
    raises :class:`AttackMismatch` naming the key ``refuse`` (``""``: any or none), and leaves
    every module's mode, the weights and BatchNorm statistics as they were, with no
    ``.grad``."""
    modes = _set_modes(model, "mixed")
    before = model_state(model)
    probe = make_probe(task, model)
    _expect(probe is not None, f"{what}: the task's evaluation set is empty")
    raised = None
    try:
        attack.check(probe)
    except AttackMismatch as error:
        raised = error
    if refuse is None:
        _expect(raised is None, f"{what}.check() refuses the model it was built for: {raised}")
    else:
        _expect(raised is not None, f"{what}.check() accepts a model it cannot attack")
        _expect(refuse == "" or raised.key == refuse,
                f"{what}.check() names key {raised.key!r}, not {refuse!r}: {raised}")
        _expect(bool(str(raised.problem)) and bool(raised.fix),
                f"{what}.check() must say what does not fit and what would fix it: "
                f"problem {raised.problem!r}, fix {raised.fix!r}")
    _expect([module.training for module in model.modules()] == modes,
            f"{what}.check() did not restore the train/eval mode of every module")
    _no_grads(model, f"{what}.check()")
    changed = _changed(model, before)
    _expect(not changed, f"{what}.check() changed the model's weights or BatchNorm statistics "
            f"{changed}")
    return raised


def check_attack_refuses(attack: Attack, model: nn.Module, task: Task, key: str = ""
                         ) -> AttackMismatch:
    """Raise ``AssertionError`` unless :meth:`Attack.check` refuses ``model`` (which ``task``
    built and ``attack`` is bound to, with a parameter that does not fit it) with an
    :class:`AttackMismatch` naming ``key`` (``""``: whatever key) and a fix, leaving the model
    untouched; the mismatch."""
    what = f"attack {type(attack).__name__}"
    raised = _check_checks(attack, model, task, what, refuse=key)
    assert raised is not None
    return raised


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


class _CountingLoss:
    """``task.loss`` that counts its calls and returns NaN on the ``nan_at``-th (1-based)."""

    def __init__(self, loss: Callable[[Any, Tensor], Tensor], nan_at: int = 0) -> None:
        self.loss, self.nan_at, self.calls = loss, nan_at, 0

    def __call__(self, output: Any, target: Tensor) -> Tensor:
        self.calls += 1
        loss = self.loss(output, target)
        return loss * math.nan if self.calls == self.nan_at else loss


def check_weight_perturbation(make: Callable[[Iterator[nn.Parameter]], WeightPerturbation],
                              task: Task, batch_size: int = 16) -> None:
    """Raise ``AssertionError`` unless the weight perturbations ``make(model.parameters())``
    builds keep the :class:`WeightPerturbation` contract on training batches of ``task``:
    a step changes the weights, reports a finite loss and updates BatchNorm statistics once;
    ``optimizer.state_dict()`` round-trips (a copy loaded from it takes the same next step);
    and a NaN loss at any of a step's loss calls raises :class:`NonFiniteStep` before any
    weight or optimizer state changed."""
    x, y = sample_batch(task, "train", batch_size)
    start = task.build_model()
    start.train()

    def pair(state: dict[str, Tensor] | None = None,
             optimizer: dict[str, Any] | None = None) -> tuple[nn.Module, WeightPerturbation]:
        model = copy.deepcopy(start)
        if state is not None:
            model.load_state_dict(state)
        weight = make(model.parameters())
        if optimizer is not None:
            weight.optimizer.load_state_dict(copy.deepcopy(optimizer))
        return model, weight

    model, weight = pair()
    what = f"weight perturbation {type(weight).__name__}"
    _check_described(weight.describe(), what)
    counting = _CountingLoss(task.loss)
    torch.manual_seed(0)
    result = weight.step(model, counting, x, y)
    _expect(isinstance(result, StepResult), f"{what}.step() returned {type(result).__name__}")
    _expect(isinstance(result.loss, Tensor) and result.loss.numel() == 1
            and bool(torch.isfinite(result.loss)), f"{what} reported loss {result.loss!r}")
    weights = [n for n, _ in model.named_parameters()]
    _expect(any(n in _changed(model, model_state(start)) for n in weights),
            f"{what} did not change the weights")
    tracked = [k for k in model.state_dict() if k.endswith("num_batches_tracked")]
    _expect(all(int(model.state_dict()[k]) == 1 for k in tracked),
            f"{what}: one step must update BatchNorm statistics once (the clean pass), got "
            f"{[int(model.state_dict()[k]) for k in tracked]}")
    state, saved = model_state(model), copy.deepcopy(weight.optimizer.state_dict())
    copied, copied_weight = pair(state, saved)
    _expect(_same(copied_weight.optimizer.state_dict(), saved),
            f"{what}: optimizer.load_state_dict(optimizer.state_dict()) changes the state")
    steps = []
    for m, w in ((model, weight), (copied, copied_weight)):
        counting = _CountingLoss(task.loss)
        torch.manual_seed(1)
        w.step(m, counting, x, y)
        steps.append((model_state(m), counting.calls))
    _expect(not _changed(copied, steps[0][0]), f"{what}: a copy loaded from "
            "optimizer.state_dict() takes another step than the original (resume is not exact)")
    for nan_at in range(1, steps[0][1] + 1):  # the NaN at each loss call of the second step
        m, w = pair(state, saved)
        torch.manual_seed(1)
        try:
            w.step(m, _CountingLoss(task.loss, nan_at), x, y)
        except NonFiniteStep:
            pass
        else:
            raise AssertionError(f"{what}: a NaN loss at call {nan_at} of a step did not raise "
                                 "NonFiniteStep")
        weights_changed = [n for n in _changed(m, state) if n in weights]
        _expect(not weights_changed, f"{what}: a NaN loss at call {nan_at} changed weights "
                f"{weights_changed}")
        _expect(_same(w.optimizer.state_dict(), saved), f"{what}: a NaN loss at call {nan_at} "
                "changed the optimizer state")


def check_model_export(task: Task, name: str, directory: Path, batch_size: int = 4) -> None:
    """Raise ``AssertionError`` unless a model of ``task`` (registered as ``name``) with
    changed weights, exported into the empty ``directory`` as a run exports it, loads back
    with :func:`samat.load_model` (the task's ``model_builder``, no data) as a model whose
    eval-mode outputs equal the original's bit for bit. A task whose ``model_spec()`` is None
    exports nothing and passes."""
    from samat.export import export_model, load_model

    model = task.build_model()
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():  # positive factors: BatchNorm variances stay valid
                tensor.mul_(1 + 0.1 * torch.rand(tensor.shape, generator=generator))
    spec = export_model(task, name, model, directory)
    if spec is None:
        _expect(task.model_spec() is None, "model_spec() is set but nothing was exported")
        _expect(not any(directory.iterdir()), "a task without model_spec() exported files")
        return
    loaded = load_model(directory)
    _expect(type(loaded) is type(model), f"load_model gave a {type(loaded).__name__}, the task "
            f"builds a {type(model).__name__}")
    _expect(not loaded.training, "load_model returned a model in train mode")
    x, _ = sample_batch(task, "eval", batch_size)
    model.eval()
    with torch.no_grad():
        _expect(_same(loaded(x), model(x)),
                "the loaded model's outputs differ from the exported model's: model_spec() or "
                "the model_builder does not rebuild the same model")


def measure_batches(measure: Measure, task: Task, limit: int = 16) -> list[tuple[Any, Tensor]]:
    """The batches samat would hand ``measure``: its first ``n_examples`` evaluation examples
    (at most ``limit``, and the evaluation set's size) in batches of its ``batch_size`` (all in
    one batch when it has none)."""
    n = min(measure.n_examples, limit, len(task.eval_dataset()))
    size = measure.batch_size or n
    return [sample_batch(task, "eval", min(size, n - start), start)
            for start in range(0, n, size)]


def check_measure(measure: Measure, task: Task, model: nn.Module | None = None,
                  batches: list[tuple[Any, Tensor]] | None = None) -> dict[str, Any]:
    """Raise ``AssertionError`` unless ``measure`` keeps the :class:`Measure` contract on
    ``model`` (default: ``task.build_model()``) in eval mode, as samat calls it, and
    ``batches`` (default: :func:`measure_batches`): ``measure()`` returns a JSON dict whose
    values are finite numbers (anything else under ``"details"``), its
    :attr:`Measure.key` a finite number among them; weights, buffers, ``.grad``,
    ``requires_grad`` and every module's mode are left as found; a second call returns the
    same values; ``describe()`` JSON with a ``name``. Returns the values."""
    what = f"measure {type(measure).__name__}"
    _check_described(measure.describe(), what)
    model = task.build_model() if model is None else model
    model.eval()
    batches = measure_batches(measure, task) if batches is None else batches
    before = model_state(model)
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    flags = [p.requires_grad for p in model.parameters()]
    values = measure.measure(model, task, batches)
    _expect(isinstance(values, dict), f"{what}.measure() returned {type(values).__name__}")
    _json(values, f"{what}.measure()")
    for name, value in values.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        _expect(name == "details" or (number and math.isfinite(value)),
                f"{what}.measure()[{name!r}] is {value!r}: values must be finite numbers (put "
                "anything else under 'details')")
    key = values.get(measure.key)
    _expect(isinstance(key, int | float) and not isinstance(key, bool),
            f"{what}.measure() lacks its key {measure.key!r} as a number: {values}")
    changed = _changed(model, before)
    _expect(not changed, f"{what} changed the model's weights or buffers {changed}")
    after = {n: p.grad for n, p in model.named_parameters()}
    _expect(all((g is None) == (after[n] is None) and (g is None or torch.equal(g, after[n]))
                for n, g in grads.items()), f"{what} changed the parameters' .grad")
    _expect([p.requires_grad for p in model.parameters()] == flags,
            f"{what} changed the parameters' requires_grad")
    _expect(not any(m.training for m in model.modules()), f"{what} left modules in train mode")
    _expect(measure.measure(model, task, batches) == values,
            f"{what} gives other values on a second call with the same seed")
    return values
