"""Every attack checked against the model and task before anything is trained.

:func:`check_attacks` runs each attack's :meth:`~samat.interfaces.Attack.check` on one
:class:`~samat.interfaces.Probe` — the task's first evaluation example and the model's output on
it — so that a recipe whose attack cannot run on its model (``n_classes: 100`` for a 10-class
model, an image attack on text) is refused by ``samat validate`` and before training, not after.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import default_collate

from samat.errors import SamatError
from samat.interfaces import Attack, AttackMismatch, Probe, Task


def _moved(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (also inside dicts, lists, tuples) on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_moved(v, device) for v in value)
    return value


@contextmanager
def _untouched(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode and no gradients inside; every module's mode and the Python, NumPy and torch
    random states (``device``'s too) as they were afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    python, numpy = random.getstate(), np.random.get_state()
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            model.eval()
            yield
    finally:
        for module, training in modes:
            module.training = training
        random.setstate(python)
        np.random.set_state(numpy)


def make_probe(task: Task, model: nn.Module, device: torch.device | None = None
               ) -> Probe | None:
    """The :class:`Probe` of ``model`` (which ``task`` built) on ``device`` (default: that of
    the model's first parameter); ``None`` if the evaluation set is empty. Changes neither the
    model nor any random state."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with _untouched(model, device):
        dataset = task.eval_dataset()
        if len(dataset) == 0:
            return None
        x, y = (task.collate_fn or default_collate)([dataset[0]])
        x, y = _moved(x, device), _moved(y, device)
        return Probe(x, y, model(x), task.input_bounds)


def mismatch_message(path: str, error: ValueError, context: str) -> str:
    """``path[.key]: problem (context); fix`` for an :class:`AttackMismatch` (or any
    ``ValueError``) an attack's check raised."""
    if isinstance(error, AttackMismatch):
        where = f"{path}.{error.key}" if error.key else path
        fix = f"; {error.fix}" if error.fix else ""
        return f"{where}: {error.problem} ({context}){fix}"
    return f"{path}: {error} ({context})"


def check_attacks(attacks: Sequence[tuple[str, Attack]], task: Task, model: nn.Module,
                  task_name: str, device: torch.device | None = None) -> None:
    """Each ``(recipe path, attack)``'s :meth:`Attack.check` on one probe of ``model``, built
    only if an attack overrides the default check; a refusal raises :class:`SamatError` naming
    the path (and the key at fault), the task (and its dataset) and the fix."""
    checked = [(path, a) for path, a in attacks if type(a).check is not Attack.check]
    probe = make_probe(task, model, device) if checked else None
    if probe is None:
        return
    for path, attack in checked:
        try:
            attack.check(probe)
        except ValueError as error:
            raise SamatError(mismatch_message(path, error, _context(task, task_name))) from None


def _context(task: Task, name: str) -> str:
    """``task NAME`` (``, dataset D`` when the task describes one)."""
    dataset = task.describe().get("dataset")
    return f"task {name}, dataset {dataset}" if isinstance(dataset, str) else f"task {name}"
