"""The four things a plugin can provide: Task, InputPerturbation, Attack (or TextAttack),
WeightPerturbation — and the Metric a task scores with.

One training step is ``x' = input_perturbation.perturb(model, loss_fn, x, y)`` followed by
``weight_perturbation.step(model, loss_fn, x', y)`` (:func:`samat.train_step`): standard
training, SAM, AT and SAM+AT are recipes, not code paths, and a task never knows which one is
running. This module imports nothing of samat but its errors.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

LossFn = Callable[[Any, Tensor], Tensor]
"""``loss_fn(model_output, target) -> scalar mean loss``."""

Bounds = tuple[float, float] | None
"""Valid input range, e.g. ``(0.0, 1.0)`` for images; ``None`` for unbounded inputs."""


class Metric(ABC):
    """Streaming metric: ``update`` per batch, ``compute`` at the end."""

    @abstractmethod
    def update(self, output: Any, target: Tensor) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """All values; must contain the task's ``metric`` key."""

    def state(self) -> list[Tensor] | None:
        """Sufficient statistics whose element-wise sum over disjoint parts of the data is the
        state of their union, so that evaluation can be sharded across data-parallel ranks;
        ``None`` (the default) if the metric cannot be merged (then rank 0 evaluates alone)."""
        return None

    def load_state(self, state: list[Tensor]) -> None:
        """Replace the statistics with ``state`` (as returned by :meth:`state`)."""
        raise NotImplementedError(f"{type(self).__name__} has no mergeable state")


class Accuracy(Metric):
    """Top-1 accuracy in percent of ``(N, C)`` logits (:meth:`predict` says how an output is
    turned into labels; override it for other outputs)."""

    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def predict(self, output: Tensor) -> Tensor:
        """The predicted labels of a batch of outputs."""
        return output.argmax(dim=1)

    def update(self, output: Tensor, target: Tensor) -> None:
        pred = self.predict(output).to(target.dtype)
        self.correct += int((pred == target).sum())
        self.total += int(target.numel())

    def compute(self) -> dict[str, float]:
        return {"accuracy": 100.0 * self.correct / max(self.total, 1), "n_examples": self.total}

    def state(self) -> list[Tensor]:
        return [torch.tensor([self.correct, self.total], dtype=torch.int64)]

    def load_state(self, state: list[Tensor]) -> None:
        self.correct, self.total = (int(v) for v in state[0])


class InputPerturbation(ABC):
    """Maps a clean batch to the one the model sees (identity, PGD, FGSM, ...).

    Implementations must not update BatchNorm statistics nor leave gradients on parameters.
    """

    name: str = "?"

    @abstractmethod
    def perturb(self, model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
        """The batch the model trains on instead of ``x`` (detached)."""

    def describe(self) -> dict[str, Any]:
        """Every parameter that determines the perturbation (recorded next to results)."""
        return {"name": self.name}


@dataclass(frozen=True)
class Probe:
    """One evaluation example and the model's output on it: what :meth:`Attack.check` checks
    an attack against before anything is trained."""

    x: Any
    """The task's first evaluation input, collated as a batch of one, on the model's device."""
    y: Tensor
    """Its target."""
    output: Any
    """``model(x)`` in eval mode, without gradients."""
    bounds: Bounds
    """The task's ``input_bounds``."""

    @property
    def n_outputs(self) -> int | None:
        """``output.shape[1]`` (a classifier's classes, a segmenter's ``(N, C, H, W)`` class
        maps); ``None`` if the output is not such a tensor."""
        out = self.output
        return int(out.shape[1]) if isinstance(out, Tensor) and out.ndim >= 2 else None


class AttackMismatch(ValueError):  # noqa: N818 - reads as what it reports
    """Raised by :meth:`Attack.check`: the attack cannot run on this model or task.

    ``problem`` says what does not fit, ``key`` names the attack's parameter at fault (``None``
    when no value of one would fit, e.g. an image attack on text) and ``fix`` what would fix
    it; samat prints ``eval.attacks.K.<key>: <problem> (task ...); <fix>``.
    """

    def __init__(self, problem: str, key: str | None = None, fix: str | None = None) -> None:
        super().__init__(problem)
        self.problem, self.key, self.fix = problem, key, fix


class Attack(ABC):
    """An evaluation attack bound to a model, torchattacks style: ``attack(x, y) -> x_adv``."""

    name: str = "?"

    @abstractmethod
    def __call__(self, x: Tensor, y: Tensor) -> Tensor: ...

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def check(self, probe: Probe) -> None:
        """Raise :class:`AttackMismatch` if this attack cannot run on the model and inputs that
        ``probe`` shows (a parameter such as ``n_classes`` that differs from the model's
        outputs, inputs of a shape, type or range it cannot attack). samat calls it where it
        builds a run's components — ``samat validate`` and every run, before training — so
        such a recipe is refused up front. Must not change the model. The default accepts
        everything (and samat then builds no probe)."""
        return None

    def set_output(self, run_dir: Path, label: str) -> None:
        """Called before evaluation with the run directory and this attack's column label, for
        attacks that write artifacts (e.g. adversarial examples); the default ignores it."""
        return None


class TextAttack(Attack):
    """An attack on raw texts (TextAttack recipes, ...): a text task hands it the evaluation
    set's ``(text, label)`` pairs instead of calling it batch by batch."""

    @abstractmethod
    def attack_texts(self, texts: list[str], labels: list[int]) -> dict[str, Any]:
        """Attack ``texts``; the results, in the task's metric (e.g. ``accuracy`` under attack)
        plus any other keys (``attack_success_rate``, ``n_examples``, ...)."""

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        raise TypeError(f"{self.name} attacks raw texts: use it through a text task, or call "
                        "attack_texts(texts, labels)")


class Measure(ABC):
    """A property of a trained model measured on a fixed set of evaluation batches (weight-space
    sharpness, the loss Hessian's spectrum, the input-gradient norm), registered through
    ``samat_register_measures`` and run after training by ``samat run`` and by ``samat eval``.

    samat builds the batches — the first :attr:`n_examples` evaluation examples in batches of
    :attr:`batch_size` (``None``: ``eval.batch_size``), on the model's device — and calls
    :meth:`measure` with the model in eval mode (BatchNorm uses its running statistics, dropout
    is off).
    """

    name: str = "?"
    key: str = "?"
    """The headline value among :meth:`measure`'s, the one ``samat report`` shows as a column."""
    n_examples: int = 256
    batch_size: int | None = None

    @abstractmethod
    def measure(self, model: nn.Module, task: Task, batches: list[tuple[Any, Tensor]]
                ) -> dict[str, Any]:
        """The measure of ``model`` under ``task``'s loss on ``batches``: finite floats by name
        (:attr:`key` among them), and lists or other details under ``"details"``. Must leave
        the model's weights, buffers and gradients as it found them, and be deterministic for
        the seed it was built with."""

    def describe(self) -> dict[str, Any]:
        """Every parameter that determines the values (recorded next to them)."""
        return {"name": self.name, "n_examples": self.n_examples, "batch_size": self.batch_size}


@dataclass
class StepResult:
    """What one optimisation step reports: the loss and output of the first (clean-weight) pass."""

    loss: Tensor
    output: Any


class NonFiniteStep(Exception):  # noqa: N818 - a signal to the trainer, not an error
    """Raised by a weight perturbation when a loss or gradient of the step is not finite (on
    this or any other data-parallel replica), *before* it changed any weight or optimizer
    state; the trainer then skips the step or stops (``train.on_nonfinite``)."""

    def __init__(self, what: str, value: float) -> None:
        super().__init__(f"{what} {value}")
        self.what, self.value = what, value


def _local(finite: bool) -> bool:
    return finite


class WeightPerturbation(ABC):
    """One optimisation step on a batch: a plain step, SAM, ASAM, ...

    ``optimizer`` is what LR schedulers drive and what is checkpointed. A step checks what it
    computes with :meth:`check_finite` before applying it (:meth:`clean_pass` checks the clean
    loss), so that a divergence never reaches the weights.
    """

    name: str = "?"
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None = None
    """Set by the trainer under fp16; :meth:`backward` and :meth:`apply_step` then route through
    it (the trainer calls ``scaler.update()`` after the step). Under a scaler non-finite
    *gradients* are expected (the scaler skips those updates); losses are still checked."""
    agree: Callable[[bool], bool] = staticmethod(_local)
    """``agree(finite_here) -> finite_on_every_replica``; the trainer sets an all-reduce under
    data parallelism so that every replica skips or stops together."""

    @abstractmethod
    def step(self, model: nn.Module, loss_fn: LossFn, x: Any, y: Tensor) -> StepResult: ...

    def check_finite(self, what: str, value: Tensor | float) -> None:
        """Raise :class:`NonFiniteStep` unless ``value`` is finite on every replica."""
        tensor = torch.as_tensor(value)
        if not self.agree(bool(torch.isfinite(tensor).all())):
            values = tensor.detach().double().reshape(-1)
            bad = values[~torch.isfinite(values)]
            if bad.numel():
                raise NonFiniteStep(what, float(bad[0]))
            raise NonFiniteStep(f"{what} (on another replica)", math.nan)

    def clean_pass(self, model: nn.Module, loss_fn: LossFn, x: Any, y: Tensor
                   ) -> tuple[Tensor, Any]:
        """Zero the gradients, then forward and backward at the current weights; returns the
        loss and the model output (what :class:`StepResult` reports). A non-finite loss raises
        :class:`NonFiniteStep` before the backward pass."""
        self.optimizer.zero_grad(set_to_none=True)
        output = model(x)
        loss = loss_fn(output, y)
        self.check_finite("loss", loss)
        self.backward(loss)
        return loss, output

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``, scaled by :attr:`scaler` if one is set."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def apply_step(self) -> None:
        """``optimizer.step()``, through :attr:`scaler` if one is set (it unscales gradients and
        skips the update on inf/NaN)."""
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
        else:
            self.optimizer.step()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class Task(ABC):
    """Data, model, loss and natural metric of one problem.

    Datasets yield ``(x, y)`` pairs; inputs live in ``input_bounds`` (normalisation belongs inside
    the model so attacks act on raw inputs).
    """

    metric: str = "accuracy"
    higher_is_better: bool = True
    input_bounds: Bounds = (0.0, 1.0)
    collate_fn: Callable[[list], Any] | None = None

    @abstractmethod
    def train_dataset(self) -> torch.utils.data.Dataset: ...

    @abstractmethod
    def eval_dataset(self) -> torch.utils.data.Dataset: ...

    @abstractmethod
    def build_model(self) -> nn.Module: ...

    def loss(self, output: Any, target: Tensor) -> Tensor:
        """Mean loss of a batch (cross-entropy by default)."""
        return nn.functional.cross_entropy(output, target)

    def example_losses(self, output: Any, target: Tensor) -> Tensor:
        """Loss of each example, shape ``[batch]`` (ESAM's data selection ranks them);
        cross-entropy averaged over non-batch dimensions by default. Override it with
        :meth:`loss`."""
        losses = nn.functional.cross_entropy(output, target, reduction="none")
        return losses.reshape(len(losses), -1).mean(dim=1)

    def new_metric(self) -> Metric:
        return Accuracy()

    def input_mask(self) -> Tensor | None:
        """Where attacks may change an input (1) or not (0), broadcastable to a batch of inputs;
        ``None`` means everywhere."""
        return None

    def input_embeddings(self, model: nn.Module) -> nn.Module | None:
        """For inputs that cannot be differentiated (token ids): the module of ``model`` whose
        output stands for the input (the token embedding layer); gradient-based input measures
        then differentiate with respect to that output. ``None`` (the default): inputs are float
        tensors, differentiated directly."""
        return None

    def evaluate(
        self,
        model: nn.Module,
        batches: Iterable[tuple[Any, Tensor]],
        attack: Attack | None = None,
    ) -> dict[str, Any]:
        """Natural metric of ``model`` on ``batches``, after ``attack`` if one is given.

        Under torchrun, samat gives each rank a shard of the data when a task keeps this method
        and its metric has a :meth:`Metric.state`; the states are summed before ``compute``.
        """
        return accumulate(self, model, batches, attack).compute()

    def report(self, model: nn.Module) -> dict[str, Any]:
        """Task-specific extra results recorded in ``metrics.json`` (e.g. learned weights)."""
        return {}

    model_format: str = "safetensors"
    """How a run exports the trained model: ``safetensors`` (samat writes its state dict to
    ``model.safetensors``) or the name of a library's own format that :meth:`save_pretrained`
    writes as a directory (e.g. ``transformers``)."""

    def model_spec(self) -> dict[str, Any] | None:
        """What rebuilds :meth:`build_model`'s architecture without the data (docs/models.md):
        ``{"architecture": {...}}``, the JSON-safe keyword arguments of the task's registered
        ``model_builder`` (:class:`samat.Register`), plus what users of the model need where the
        task knows it: ``classes`` (names, in output order), ``input_shape`` (of one example;
        ``None`` for a free dimension), ``normalization`` (``{"mean": [...], "std": [...]}``,
        applied inside the model) and ``output`` (one line on what the model returns).
        ``None`` (the default): runs of this task export no model."""
        return None

    def save_pretrained(self, model: nn.Module, directory: Path) -> None:
        """Write ``model`` in :attr:`model_format` into the new, empty ``directory`` (config,
        weights as safetensors, tokenizer, ...), loadable by that format's library alone; called
        instead of samat's ``model.safetensors`` when :attr:`model_format` is not
        ``safetensors``."""
        raise NotImplementedError(f"{type(self).__name__} exports {self.model_format} models "
                                  "but does not implement save_pretrained")

    def describe(self) -> dict[str, Any]:
        """Facts about the data and model recorded next to results (sizes, sources)."""
        return {}


def accumulate(task: Task, model: nn.Module, batches: Iterable[tuple[Any, Tensor]],
               attack: Attack | None = None) -> Metric:
    """The default evaluation loop: ``task``'s metric updated with ``model``'s outputs on
    ``batches`` (after ``attack``), in eval mode; not yet computed."""
    metric = task.new_metric()
    model.eval()
    for x, y in batches:
        if attack is not None:
            x = attack(x, y)
        with torch.no_grad():
            metric.update(model(x), y)
    return metric
