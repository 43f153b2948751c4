"""What every image attack shares: the attack context, input and radius checks, torchattacks glue.

Every attack runs inside :func:`attacking`: the model in eval mode (each submodule's mode
restored afterwards), parameters frozen (no ``.grad`` is ever written to them), BatchNorm
statistics frozen, and the global torch / numpy random state untouched (torchattacks reseeds the
global generators; we fork them). Only examples the model classifies correctly are attacked; the
others are returned unchanged, so robust accuracy can never exceed clean accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from samat import Attack, AttackMismatch, Probe, check_number, frozen_bn_stats

TORCHATTACKS_NORMS = {"linf": "Linf", "l2": "L2"}
"""samat's norm names -> torchattacks' spelling."""
CHOOSE_ANOTHER = "choose an attack for this task (samat list attacks), e.g. pgd or fgsm"
"""The fix of an image attack on a task whose inputs or outputs it cannot attack."""


def library_version(package: str) -> str:
    """Installed version of ``package`` (``"unknown"`` if it has no metadata)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def check_eps(norm: str, eps: float) -> float:
    """A finite radius > 0; in ℓ∞ at most 1, the width of the image range [0, 1] (a larger one
    allows every image: meaningless, and usually a radius meant in 1/255 units)."""
    check_number("eps", eps, minimum=0, strict_min=True)
    if norm == "linf" and eps > 1:
        raise ValueError(f"eps must be <= 1 (the width of the input range [0, 1]) for norm linf, "
                         f"got {eps:g}; did you mean {eps:g}/255?")
    return float(eps)


def check_images(x: Tensor, y: Tensor) -> None:
    """``x`` an ``(N, C, H, W)`` batch in [0, 1] and ``y`` its ``(N,)`` labels."""
    if x.ndim != 4:
        raise ValueError(f"images must be an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("images must lie in [0, 1] (normalisation belongs inside the model)")


def shown(value: object) -> str:
    """``value`` described in a message: a tensor's dtype and shape, else its type."""
    if isinstance(value, Tensor):
        return f"{str(value.dtype).removeprefix('torch.')} of shape {tuple(value.shape)}"
    return type(value).__name__


def check_fit(probe: Probe, name: str, n_classes: int | None = None, min_classes: int = 2,
              why: str = "") -> int:
    """The model's number of classes; :class:`AttackMismatch` unless ``probe`` shows float
    ``(N, C, H, W)`` images in [0, 1] (declared by the task's ``input_bounds``), ``(N, classes)``
    logits with at least ``min_classes`` classes (``why``: the reason, in parentheses) and, if
    given, ``n_classes`` of them."""
    x = probe.x
    if not (isinstance(x, Tensor) and x.ndim == 4 and x.is_floating_point()):
        raise AttackMismatch(f"{name} attacks float (N, C, H, W) images, but the task's "
                             f"inputs are {shown(x)}", fix=CHOOSE_ANOTHER)
    bounds = probe.bounds
    if bounds is None or bounds[0] < 0 or bounds[1] > 1:
        raise AttackMismatch(f"{name} attacks images in [0, 1], but the task's input_bounds "
                             f"are {None if bounds is None else list(bounds)}",
                             fix=CHOOSE_ANOTHER)
    out = probe.output
    if not (isinstance(out, Tensor) and out.ndim == 2):
        raise AttackMismatch(f"{name} attacks classifiers with (N, classes) logits, but the "
                             f"model outputs {shown(out)}", fix=CHOOSE_ANOTHER)
    classes = int(out.shape[1])
    if classes < min_classes:
        raise AttackMismatch(f"{name} needs a model with at least {min_classes} outputs{why}, "
                             f"but this one has {classes}", fix=CHOOSE_ANOTHER)
    if n_classes is not None and n_classes != classes:
        raise AttackMismatch(f"{n_classes}, but the model has {classes} outputs",
                             key="n_classes", fix=f"set n_classes: {classes}")
    return classes


def check_n_classes(logits: Tensor, n_classes: int) -> None:
    if logits.shape[1] != n_classes:
        raise ValueError(f"n_classes={n_classes} but the model outputs {logits.shape[1]} classes")


@contextmanager
def attacking(model: nn.Module, device: torch.device, seed: int | None) -> Iterator[None]:
    """Eval mode, frozen parameters and BN statistics, private RNG seeded with ``seed``."""
    modes = [(module, module.training) for module in model.modules()]
    trainable = [p for p in model.parameters() if p.requires_grad]
    numpy_state = np.random.get_state()
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), frozen_bn_stats(model), torch.enable_grad():
        try:
            model.eval()
            for p in trainable:
                p.requires_grad_(False)
            if seed is not None:
                torch.manual_seed(seed)
                np.random.seed(seed)
            yield
        finally:
            for p in trainable:
                p.requires_grad_(True)
            for module, training in modes:
                module.training = training
            np.random.set_state(numpy_state)


def attack_correct(
    model: nn.Module, x: Tensor, y: Tensor, run: Callable[[Tensor, Tensor], Tensor],
    n_classes: int | None = None,
) -> Tensor:
    """``run`` on the correctly classified examples only; the others are returned unchanged."""
    with torch.no_grad():
        logits = model(x)
    if n_classes is not None:
        check_n_classes(logits, n_classes)
    x_adv = x.clone()
    idx = (logits.argmax(1) == y).nonzero().flatten()
    if idx.numel():
        x_adv[idx] = run(x[idx], y[idx]).detach().to(x.dtype)
    return x_adv


@dataclass
class TorchattacksSpec:
    """One torchattacks attack: its class, constructor arguments and overridden attributes.

    ``attributes`` holds what the constructor cannot express (``n_target_classes`` of APGDT /
    FAB, which torchattacks otherwise derives as ``n_classes - 1``).
    """

    cls_name: str
    kwargs: dict[str, Any]
    attributes: dict[str, Any] = field(default_factory=dict)

    def build(self, model: nn.Module, device: torch.device) -> Any:
        import torchattacks

        attack = getattr(torchattacks, self.cls_name)(model, **self.kwargs)
        for key, value in self.attributes.items():
            setattr(attack, key, value)
        attack.set_device(device)
        return attack

    def describe(self) -> dict[str, Any]:
        kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs.items()}
        return {"class": f"torchattacks.{self.cls_name}", **kwargs, **self.attributes}


class TorchattacksAttack(Attack):
    """A single torchattacks attack run under samat's attack contract."""

    def __init__(
        self, model: nn.Module, name: str, component: TorchattacksSpec,
        record: dict[str, Any], seed: int | None = None, n_classes: int | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.component = component
        self.record = record
        self.seed = seed
        self.n_classes = n_classes

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.record,
            "component": self.component.describe(),
            "library": "torchattacks",
            "library_version": library_version("torchattacks"),
        }

    def check(self, probe: Probe) -> None:
        check_fit(probe, self.name, self.n_classes)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        check_images(x, y)
        x, y = x.detach(), y.detach()
        with attacking(self.model, x.device, self.seed):
            attack = self.component.build(self.model, x.device)
            return attack_correct(self.model, x, y, attack, self.n_classes)
