"""The evaluation after training (``samat run``) and of any model (``samat eval``): the natural
metric and every attack's, resumable and with a progress bar per attack.

Results are kept as they finish in ``<dir>/eval_state/``: one JSON file per finished pass
(natural, then each attack), and for the pass under way the metric's state after its last
batches together with the RNG state, so that a run killed mid-attack resumes at that batch and
ends with the numbers of an uninterrupted evaluation (:class:`EvalState`). Each entry carries a
fingerprint of the model's weights and of what is evaluated (attack, examples, batch size):
anything else is evaluated again. Per-batch resumption needs the default evaluation loop and a
metric with a :meth:`~samat.interfaces.Metric.state`; tasks with their own loop (text attacks)
and evaluations sharded over torchrun replicas resume per finished pass.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from samat import distributed, interrupts
from samat.atomic import remove_temporaries, write_atomic, write_json
from samat.data import device_batches, eval_loader
from samat.errors import SamatError
from samat.interfaces import Attack, Measure, Task
from samat.seeding import rng_state, set_rng_state
from samat.train import Stopped

log = logging.getLogger("samat")

STATE_DIR = "eval_state"
"""Under a run or eval directory: the finished passes and the one under way."""
SAVE_EVERY_S = 2.0
"""How often the pass under way saves its state (and after its first batch)."""


def evaluate(components: Any, recipe: Any, state_dir: Path | None = None,
             on_result: Callable[[str, dict[str, Any], int], None] | None = None
             ) -> dict[str, Any]:
    """Natural metric and every attack's metric of ``components`` (a
    :class:`samat.runner.Components`) on the first ``eval.n_examples`` examples, in float32;
    under torchrun sharded across ranks. With ``state_dir`` (rank 0's run directory) finished
    passes and the pass under way are kept there and picked up again (see the module
    docstring); the state is removed once every pass has finished. ``on_result(label, values,
    n_examples)`` is called after each pass (``natural`` first), then with each measure's
    values as ``measures/<label>``."""
    c = components
    key = c.task.metric
    dataset = c.task.eval_dataset()
    state = EvalState(Path(state_dir) / STATE_DIR, weights_fingerprint(c.model)) \
        if state_dir is not None else None
    n = len(dataset) if recipe.eval.n_examples is None else min(recipe.eval.n_examples,
                                                                 len(dataset))

    def batches(rank: int, world_size: int) -> Iterator[tuple[Any, Any]]:
        loader = eval_loader(c.task, dataset, recipe.eval.batch_size, recipe.eval.n_examples,
                             rank=rank, world_size=world_size)
        return device_batches(loader, c.device, recipe.train.channels_last)

    what = {"n_examples": n, "batch_size": recipe.eval.batch_size,
            "channels_last": recipe.train.channels_last}
    natural = _pass(c.task, c.model, batches, None, "natural", {**what}, n, state)
    if on_result is not None:
        on_result("natural", natural, n)
    natural.pop("seconds", None)
    log.info("natural %s: %.2f", key, natural[key])
    attacked = []
    for label, attack in c.attacks:
        values = _pass(c.task, c.model, batches, attack, label,
                       {**what, "attack": attack.describe()}, n, state)
        log.info("%s %s: %.2f", label, key, values[key])
        if on_result is not None:
            on_result(label, values, n)
        attacked.append({"label": label, "attack": attack.describe(), **values})
    average = (sum(a[key] for a in attacked) / len(attacked)) if attacked else None
    measured = [_measure(c, recipe, label, measure, dataset, state)
                for label, measure in c.measures] if distributed.world().is_main else []
    for result in measured if on_result is not None else []:
        on_result(f"measures/{result['label']}", result["values"], result["n_examples"])
    if state is not None:
        state.clear()
    return {"natural": natural, "attacks": attacked, "average_under_attack": average,
            "measures": measured}


def _measure(c: Any, recipe: Any, label: str, measure: Measure, dataset: Any,
             state: EvalState | None) -> dict[str, Any]:
    """One measure of the model on its first ``n_examples`` evaluation examples (rank 0 alone),
    or its kept result: ``{label, measure, key, value, values, details, n_examples,
    seconds}``."""
    batch_size = measure.batch_size or recipe.eval.batch_size
    what = {"measure": measure.describe(), "batch_size": batch_size,
            "channels_last": recipe.train.channels_last}
    if state is not None:
        kept = state.finished(f"measure {label}", what)
        if kept is not None:
            log.info("measure %s: kept from an earlier evaluation (%s)", label, state.directory)
            return kept
    loader = eval_loader(c.task, dataset, batch_size, measure.n_examples)
    batches = list(device_batches(loader, c.device, recipe.train.channels_last))
    c.model.eval()
    start = time.perf_counter()
    try:
        values = measure.measure(c.model, c.task, batches)
    except ValueError as exc:  # a measure's one-line refusal (non-finite loss, bad setting)
        raise SamatError(f"eval.measures ({label}): {exc}") from None
    seconds = time.perf_counter() - start
    details = values.pop("details", None)
    bad = [k for k, v in values.items()
           if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v)]
    if measure.key not in values or bad:
        problem = (f"returned no {measure.key!r}" if measure.key not in values
                   else f"returned {bad[0]}={values[bad[0]]!r} (finite numbers only)")
        raise SamatError(f"eval.measures ({label}): measure '{measure.name}' {problem}")
    result = {"label": label, "measure": measure.describe(), "key": measure.key,
              "value": float(values[measure.key]),
              "values": {k: float(v) for k, v in values.items()},
              "n_examples": sum(len(y) for _, y in batches), "seconds": seconds}
    if details is not None:
        result["details"] = details
    log.info("measure %s: %s = %.6g (%.1f s)", label, measure.key, result["value"], seconds)
    if state is not None:
        state.finish(f"measure {label}", what, result)
    return result


def _pass(task: Task, model: nn.Module, batches: Any, attack: Attack | None, label: str,
          what: dict[str, Any], n: int, state: EvalState | None) -> dict[str, Any]:
    """One pass over the evaluation set (natural if ``attack`` is None), or its kept result."""
    name = "natural" if attack is None else f"attack {label}"
    if state is not None:
        kept = state.finished(label, what)
        if kept is not None:
            log.info("%s: kept from an earlier evaluation (%s)", name, state.directory)
            return kept
    start = time.perf_counter()
    if state is not None and _per_batch(task):
        values, elapsed = _resumable(task, model, batches(0, 1), attack, label, what, n, state)
        start -= elapsed
    else:
        values = distributed.evaluate(task, model, batches, attack)
    values["seconds"] = time.perf_counter() - start
    if state is not None:
        state.finish(label, what, values)
    return values


def _per_batch(task: Task) -> bool:
    """Whether ``task`` evaluates in the default loop with a metric state to keep (and this
    process evaluates alone)."""
    return distributed.shardable(task) and not distributed.world().distributed


def _resumable(task: Task, model: nn.Module, batches: Iterator[tuple[Any, Any]],
               attack: Attack | None, label: str, what: dict[str, Any], n: int,
               state: EvalState) -> tuple[dict[str, Any], float]:
    """The default evaluation loop, saving its metric state and the RNG state as it goes and
    continuing from a saved one; the metric's values and the seconds spent before this call."""
    metric = task.new_metric()
    done, seen, elapsed = 0, 0, 0.0
    iterator = iter(batches)
    first = next(iterator, None)  # the loader's iterator draws its seed from the RNG now
    partial = state.partial(label, what)
    if partial is not None:
        metric.load_state(partial["metric"])
        set_rng_state(partial["rng"])
        done, seen, elapsed = partial["batches"], partial["examples"], partial["seconds"]
        log.info("%s: resuming at batch %d (%d of %d examples done)", label, done + 1, seen, n)
    model.eval()
    start, saved = time.perf_counter() - elapsed, time.perf_counter()
    with tqdm(total=n, initial=seen, desc=label, unit="ex", leave=False, disable=None,
              dynamic_ncols=True) as bar:
        chained = itertools.chain([first], iterator) if first is not None else iter(())
        for index, (x, y) in enumerate(chained):
            if index < done:
                continue
            if attack is not None:
                x = attack(x, y)
            with torch.no_grad():
                metric.update(model(x), y)
            done, seen = index + 1, seen + len(y)
            bar.update(len(y))
            now = time.perf_counter()
            stop = interrupts.stop_requested()
            if done == 1 or stop or now - saved >= SAVE_EVERY_S:
                state.save_partial(label, what, metric.state(), done, seen, now - start)
                saved = now
            if stop:
                raise Stopped(f"evaluation stopped ({stop}) in {label} after batch {done} "
                              f"({seen} of {n} examples); continue with --resume")
    return metric.compute(), elapsed


class EvalState:
    """Finished passes (``<key>.json`` and the RNG state after each, ``<key>.rng``) and the pass
    under way (``partial.pt``) of one model's
    evaluation, in ``directory``; entries of other weights or settings are ignored."""

    def __init__(self, directory: Path, weights: str) -> None:
        self.directory, self.weights = directory, weights

    def _key(self, label: str, what: dict[str, Any]) -> str:
        text = json.dumps({"weights": self.weights, "label": label, **what}, sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _file(self, label: str, what: dict[str, Any]) -> Path:
        return self.directory / f"{self._key(label, what)[:20]}.json"

    def finished(self, label: str, what: dict[str, Any]) -> dict[str, Any] | None:
        """The kept result of this pass, or None; the RNG is set to its state after the pass,
        so that the passes after it draw what they would have drawn."""
        path = self._file(label, what)
        try:
            entry = json.loads(path.read_text())
            rng = torch.load(path.with_suffix(".rng"), map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 — missing, torn or foreign: evaluate the pass again
            return None
        values = entry.get("values") if isinstance(entry, dict) else None
        if entry.get("key") != self._key(label, what) or not (
                isinstance(values, dict) and _finite_numbers(values)):
            return None
        set_rng_state(rng)
        return values

    def finish(self, label: str, what: dict[str, Any], values: dict[str, Any]) -> None:
        """Keep the result of a finished pass and the RNG state after it (and drop the
        partial state)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._file(label, what)
        state = rng_state()
        write_atomic(path.with_suffix(".rng"), lambda stream: torch.save(state, stream))
        write_json(path, {"key": self._key(label, what), "label": label, **what,
                          "values": values})
        (self.directory / "partial.pt").unlink(missing_ok=True)

    def partial(self, label: str, what: dict[str, Any]) -> dict[str, Any] | None:
        """The saved state of this pass under way, or None (also for an unreadable one)."""
        path = self.directory / "partial.pt"
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 — a torn or foreign file: start the pass again
            log.warning("%s: unreadable (%s); the pass starts again", path, exc)
            return None
        if not isinstance(saved, dict) or saved.get("key") != self._key(label, what):
            return None
        return saved

    def save_partial(self, label: str, what: dict[str, Any], metric: list[torch.Tensor],
                     batches: int, examples: int, seconds: float) -> None:
        """Save the pass under way after ``batches`` batches."""
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_temporaries(self.directory)
        saved = {"key": self._key(label, what), "metric": [t.detach().cpu() for t in metric],
                 "rng": rng_state(), "batches": batches, "examples": examples,
                 "seconds": seconds}
        write_atomic(self.directory / "partial.pt", lambda stream: torch.save(saved, stream))

    def clear(self) -> None:
        """Remove the state (every pass has finished and its results are written)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def weights_fingerprint(model: nn.Module) -> str:
    """A sha256 of ``model``'s parameters and buffers (names, shapes, dtypes, values)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()
                      .tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _finite_numbers(values: dict[str, Any]) -> bool:
    return all(not isinstance(v, float) or math.isfinite(v) for v in values.values())
