"""Periodic evaluation during training and the best checkpoint it selects.

Every ``train.eval_every`` epochs (and after the last) the trainer measures the natural metric
on the first ``train.eval_examples`` evaluation examples (``eval.n_examples`` if null) and, with
``train.eval_attack``, the same metric under that attack. The global RNG states are restored
afterwards, so a run trains to the same weights with or without these evaluations.

With ``train.keep_best`` an evaluation that beats every earlier one (strictly: the earlier one
wins a tie) is saved as ``checkpoints/best.pt``, before ``last.pt``, and its record is kept in
the trainer's progress (so in every checkpoint): ``--resume`` continues with the same best.
``eval.checkpoint: best`` evaluates ``best.pt``'s weights at the end (:func:`load_weights`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samat import distributed
from samat.atomic import to_json
from samat.errors import SamatError
from samat.interfaces import Attack, Task
from samat.seeding import rng_state, set_rng_state

Batches = Callable[[int, int], Iterable[tuple[Any, torch.Tensor]]]
"""``batches(rank, world_size)``: that rank's share of the evaluation examples."""


def periodic_evaluation(task: Task, model: nn.Module, batches: Batches, n_examples: int,
                        attack: tuple[str, Attack] | None = None) -> dict[str, Any]:
    """History entries of one periodic evaluation: ``eval_<metric>`` (natural),
    ``eval_n_examples`` and, with ``attack`` (its label and the attack),
    ``eval_attack`` (label and parameters) and ``eval_robust_<metric>``. Every global RNG is
    left as it was found."""
    key = task.metric
    saved = rng_state()
    try:
        record: dict[str, Any] = {
            f"eval_{key}": distributed.evaluate(task, model, batches)[key],
            "eval_n_examples": n_examples,
        }
        if attack is not None:
            label, instance = attack
            record["eval_attack"] = {"label": label, **instance.describe()}
            record[f"eval_robust_{key}"] = distributed.evaluate(task, model, batches,
                                                                instance)[key]
    finally:
        set_rng_state(saved)
    return record


def select(best: dict[str, Any] | None, record: dict[str, Any], criterion: str, task: Task,
           epoch: int, step: int) -> dict[str, Any] | None:
    """The new best (what ``metrics.json`` and the checkpoints record) if the evaluation
    ``record`` of ``epoch`` (1-based) beats ``best`` by ``criterion`` (``natural`` or
    ``robust``) in the task's direction; None if it does not (or its value is not finite)."""
    key = task.metric
    value = record[f"eval_{key}" if criterion == "natural" else f"eval_robust_{key}"]
    if value is None or not math.isfinite(value):
        return None
    if best is not None:
        better = value > best["value"] if task.higher_is_better else value < best["value"]
        if not better:
            return None
    chosen = {"epoch": epoch, "step": step, "criterion": criterion, "metric": key,
              "value": value, "n_examples": record["eval_n_examples"]}
    if criterion == "robust":
        chosen["attack"] = record["eval_attack"]
    return json.loads(to_json(chosen))  # plain data: checkpoints load with weights_only=True


def load_weights(model: nn.Module, path: Path, best: dict[str, Any] | None,
                 device: torch.device) -> None:
    """Load the model weights of ``path`` (``checkpoints/best.pt``) into ``model``, checking
    that it holds the epoch ``best`` records. Under torchrun every rank calls it, after rank 0
    has written the file."""
    if best is None:
        raise SamatError("eval.checkpoint: best, but no periodic evaluation gave a finite value "
                         "to select by; evaluate with eval.checkpoint: last")
    distributed.all_true(True)  # a barrier: rank 0 wrote best.pt before reaching it
    why = None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        why = "missing"
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        why = f"unreadable ({type(exc).__name__})"
    else:
        progress = state.get("progress") if isinstance(state, dict) else None
        epoch = progress.get("epoch") if isinstance(progress, dict) else None
        if epoch != best["epoch"]:
            why = f"from epoch {epoch}, not the best epoch {best['epoch']} the run records"
        else:
            try:
                model.load_state_dict(state["model"])
            except Exception as exc:  # mismatched keys or shapes
                why = f"not for this model ({type(exc).__name__})"
    if why is not None:
        raise SamatError(f"eval.checkpoint: best: {path} is {why}; restore it, or start the "
                         "run again")
