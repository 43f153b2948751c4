"""``samat eval``: the robustness of a trained model — a run directory, a weights file, a timm or
torchvision model, a Hugging Face model — in an eval directory whose ``metrics.json`` has the
schema of a run's, so that ``samat report`` shows trained and evaluated models side by side.

SOURCE and what else it needs (docs/eval.md):

- a run directory: its ``config.yaml`` and its checkpoint (weights and the RNG state the run's
  own evaluation started from, so that the same attacks give the same numbers); an eval recipe
  (a mapping with ``eval:`` and optionally ``task:``, ``device``, ``seed``) replaces parts of
  the run's recipe, ``eval.add_attacks`` / ``eval.add_measures`` append to the run's attacks /
  measures;
- a weights file (``.safetensors``, or a state dict in ``.pt``/``.pth``/``.bin``, loaded with
  ``weights_only=True``) with a recipe whose task builds the architecture;
- ``timm:NAME`` or ``torchvision:NAME`` with an image recipe (``task.pretrained`` for the
  library's weights, from its own cache);
- a Hugging Face model directory or id with a text recipe.

Evaluation resumes with ``--resume`` (:mod:`samat.evaluation`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samat import results
from samat.best import load_weights as best_weights
from samat.errors import SamatError, first_line
from samat.evaluation import evaluate, weights_fingerprint
from samat.locking import RunLock, acquire_unless_alive
from samat.plugins import call_result_hooks
from samat.recipe import Recipe, compose_recipe, find_recipe, recipe_from_dict
from samat.runner import Components, build_components
from samat.seeding import set_rng_state
from samat.tracking import RunEvents

log = logging.getLogger("samat")

SOURCE_FILE = "source.json"
"""In an eval directory, beside its ``config.yaml`` (the recipe): what was evaluated."""
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
LIBRARIES = ("timm:", "torchvision:")
EVAL_RECIPE_KEYS = {"eval", "task", "device", "seed", "name", "description", "output_dir",
                    "logging"}
"""What an eval recipe may set over a run directory's recipe (training is not repeated)."""


@dataclass
class Source:
    """What ``samat eval`` evaluates: ``kind`` is run, weights, library or huggingface."""

    text: str
    kind: str
    path: Path | None = None


def resolve_source(text: str) -> Source:
    """Classify SOURCE (see the module docstring); a one-line error if it is none of them."""
    if text.startswith(LIBRARIES):
        return Source(text, "library")
    path = Path(text)
    if path.is_dir() and (path / SOURCE_FILE).is_file():
        raise SamatError(f"SOURCE {text}: the output of samat eval, which holds no weights; "
                         f"evaluate what it evaluated ({_evaluated(path / SOURCE_FILE)})")
    if path.is_dir() and results.is_run_dir(path):
        return Source(text, "run", path)
    if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
        return Source(text, "weights", path)
    if path.is_dir() and (path / "config.json").is_file():
        return Source(text, "huggingface", path)
    if not path.exists() and text.count("/") == 1 and not text.startswith((".", "/")):
        return Source(text, "huggingface")  # a hub id such as distilbert-base-uncased-...
    if path.is_dir():
        raise SamatError(f"SOURCE {text}: a directory with neither {results.CONFIG} (a samat "
                         "run) nor config.json (a Hugging Face model)")
    if path.is_file():
        raise SamatError(f"SOURCE {text}: a weights file must end in "
                         f"{', '.join(WEIGHT_SUFFIXES)}")
    raise SamatError(f"SOURCE {text}: not found; give a run directory, a weights file with a "
                     "recipe, timm:NAME, torchvision:NAME or a Hugging Face model")


def _evaluated(path: Path) -> str:
    """What the eval directory's ``source.json`` names, as a command."""
    try:
        return f"samat eval {json.loads(path.read_text())['source']} ..."
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path} is unreadable"


def eval_recipe(source: Source, recipe_path: str | None, overrides: list[str]) -> Recipe:
    """The recipe of the evaluation: the run's (with the eval recipe over it) or the given
    one with the model SOURCE names."""
    given, found, sources = _read_mapping(recipe_path) if recipe_path else (None, None, None)
    if source.kind == "run":
        data = results.read_config(source.path)
        if given is not None:
            data = _over_run(data, given, recipe_path)
        found = None  # keys come from the run's config.yaml too: no file:line to give
    else:
        if given is None:
            raise SamatError(f"SOURCE {source.text}: a {source.kind} source needs a RECIPE that "
                             "names the task (and for a weights file its model), e.g. samat "
                             f"eval {source.text} recipes/cifar10/sgd.yaml")
        data = {k: v for k, v in given.items() if k != "sweep"}
        task = data.get("task")
        if source.kind in ("library", "huggingface"):
            if not isinstance(task, dict):
                raise SamatError(f"{recipe_path}: task: expected a mapping with a name, got "
                                 f"{task!r}")
            data["task"] = {**task, "model": source.text}
        data.setdefault("name", Path(recipe_path).stem)
        train = data.setdefault("train", {})
        if isinstance(train, dict) and train.get("epochs") is None \
                and train.get("iterations") is None:
            train["epochs"] = 1  # a recipe needs a length; nothing is trained here
    recipe = recipe_from_dict(data, overrides, path=found, sources=sources)
    if not recipe.name:
        recipe.name = source.path.name if source.path else "eval"
    return recipe


def _read_mapping(path: str) -> tuple[dict[str, Any], Path, dict[str, str]]:
    """The eval recipe's data, its file and the ``file:line`` of each key."""
    found = find_recipe(path)
    data, sources = compose_recipe(found)
    if not isinstance(data, dict):
        raise SamatError(f"{path}: expected a mapping of keys (eval:, task:, ...) at the top "
                         f"level, got a {type(data).__name__}")
    return data, found, sources


def _over_run(base: dict[str, Any], given: dict[str, Any], path: str) -> dict[str, Any]:
    """The run's recipe ``base`` with the eval recipe ``given`` over it."""
    unknown = sorted(set(given) - EVAL_RECIPE_KEYS)
    if unknown:
        raise SamatError(f"{path}: {unknown[0]}: an eval recipe over a run sets only "
                         f"{', '.join(sorted(EVAL_RECIPE_KEYS))} (the run is not retrained)")
    data = copy.deepcopy(base)
    for key, value in given.items():
        if key == "eval":
            if not isinstance(value, dict):
                raise SamatError(f"{path}: eval: expected a mapping, got {value!r}")
            value = dict(value)
            added = {kind: value.pop(f"add_{kind}", None) for kind in ("attacks", "measures")}
            data["eval"] = {**data.get("eval", {}), **value}
            for kind, items in added.items():
                if items is None:
                    continue
                if not isinstance(items, list):
                    raise SamatError(f"{path}: eval.add_{kind}: expected a list of "
                                     f"{kind}, got {items!r}")
                data["eval"][kind] = [*data["eval"].get(kind, []), *items]
        elif key == "task":
            if not isinstance(value, dict):
                raise SamatError(f"{path}: task: expected a mapping of task parameters, got "
                                 f"{value!r}")
            if value.get("name", data["task"].get("name")) != data["task"].get("name"):
                raise SamatError(f"{path}: task.name: the run's task is "
                                 f"{data['task'].get('name')}; an eval recipe may change its "
                                 "data parameters (e.g. root), not the task")
            data["task"] = {**data["task"], **value}
        else:
            data[key] = value
    return data


def load_weights(source: Source, c: Components, recipe: Recipe) -> dict[str, Any]:
    """Put SOURCE's weights into ``c.model``; facts about them for ``metrics.json``."""
    if source.kind == "run":
        return _load_run(source.path, c, recipe)
    if source.kind == "weights":
        state = _read_state(source.path)
        _load_state(c.model, state, source.path)
        return {"file": str(source.path)}
    return {}  # built with the library's own weights by the task


def _load_run(run_dir: Path, c: Components, recipe: Recipe) -> dict[str, Any]:
    """The checkpoint's weights (``eval.checkpoint: best``: ``best.pt``'s) and RNG state."""
    path = run_dir / results.CHECKPOINT
    try:
        state = torch.load(path, map_location=c.device, weights_only=True)
    except FileNotFoundError:
        raise SamatError(f"SOURCE {run_dir}: {path} is missing (the run stopped before its "
                         "first checkpoint); nothing to evaluate") from None
    except Exception as exc:  # noqa: BLE001 — torch raises many kinds for torn files
        raise SamatError(f"SOURCE {run_dir}: {path} is unreadable ({first_line(exc)})"
                         ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise SamatError(f"SOURCE {run_dir}: {path} is not a samat checkpoint")
    _load_state(c.model, state["model"], path)
    if "rng" in state:  # the state the run's own evaluation started from
        rng = dict(state["rng"])
        rng["torch"] = rng["torch"].cpu()
        set_rng_state(rng)
    progress = state.get("progress") or {}
    if recipe.eval.checkpoint == "best":
        path = run_dir / results.BEST_CHECKPOINT
        best_weights(c.model, path, progress.get("best"), c.device)
        progress = progress.get("best") or {}
    metrics = results.read_metrics(run_dir) or {}
    epochs = (metrics.get("training") or {}).get("epochs")
    return {"run_dir": str(run_dir), "checkpoint": str(path), "epoch": progress.get("epoch"),
            "step": progress.get("step"), "training_finished":
            results.run_status(metrics) == results.FINISHED or None, "epochs": epochs}


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: safetensors, or a torch file loaded with
    ``weights_only=True`` (a bare state dict, or one under ``model``/``state_dict``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise SamatError("a .safetensors source needs the safetensors package: pip install "
                         "safetensors") from None
    except Exception as exc:  # noqa: BLE001 — torn, foreign or pickled-code files
        raise SamatError(f"SOURCE {path}: not a readable weights file ({first_line(exc)}); "
                         "give a safetensors file or a state dict saved with torch.save"
                         ) from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise SamatError(f"SOURCE {path}: not a state dict (a mapping of names to tensors)")
    return state


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``model``, or into the one child module it fits exactly (a bare
    backbone's weights into a model that wraps it, e.g. with its input normalisation)."""
    for target in (model, *model.children()):
        if set(target.state_dict()) == set(state):
            try:
                target.load_state_dict(state)
            except RuntimeError as exc:
                raise SamatError(f"SOURCE {path}: the weights do not fit the recipe's model "
                                 f"({first_line(exc)})") from None
            return
    ours, theirs = set(model.state_dict()), set(state)
    missing, unexpected = sorted(ours - theirs), sorted(theirs - ours)
    raise SamatError(f"SOURCE {path}: the weights do not fit the recipe's model: "
                     f"{len(missing)} of its tensors missing (e.g. {missing[:1]}), "
                     f"{len(unexpected)} unexpected (e.g. {unexpected[:1]}); check the "
                     "recipe's task.model and its parameters")


def run_eval(source_text: str, recipe_path: str | None = None, overrides: list[str] = (),
             *, resume: bool = False, output: str | None = None,
             label: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Evaluate SOURCE; the eval directory and its ``metrics.json`` content."""
    source = resolve_source(source_text)
    recipe = eval_recipe(source, recipe_path, list(overrides))
    c = build_components(recipe)
    facts = load_weights(source, c, recipe)
    out, lock = _open(recipe, source, output, resume)
    handler = logging.FileHandler(out / results.LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("samat").addHandler(handler)
    events = RunEvents(out, c.loggers, recipe.as_dict(), kind="eval",
                       resumed_at=0 if resume else None)
    try:
        log.info("eval %s: %s source %s, device %s", out, source.kind, source.text, c.device)
        if source.kind == "library" and not recipe.task.params.get("pretrained"):
            log.warning("%s: freshly initialised weights (task.pretrained is not true): "
                        "the numbers are a random model's", source.text)
        for attack_label, attack in c.attacks:
            attack.set_output(out, attack_label)
        with events:
            evaluation = evaluate(c, recipe, out, on_result=lambda name, values, n:
                                  events.eval_result(name, values, final=True, n_examples=n))
            metrics = _metrics(recipe, recipe_path, source, c, facts, label, out, evaluation)
            lock.verify()
            results.write_json(out / results.METRICS, metrics)
            events.metrics = metrics
        call_result_hooks(metrics, str(out))
        return out, metrics
    finally:
        logging.getLogger("samat").removeHandler(handler)
        handler.close()
        lock.release()


def _metrics(recipe: Recipe, recipe_path: str | None, source: Source, c: Components,
             facts: dict[str, Any], label: str | None, out: Path, evaluation: dict[str, Any]
             ) -> dict[str, Any]:
    """The eval directory's ``metrics.json`` content."""
    return {
        "recipe": {"path": recipe_path, "name": recipe.name},
        "run_dir": str(out),
        "task": {"name": recipe.task.name, "params": dict(recipe.task.params),
                 **c.task.describe()},
        "metric": c.task.metric,
        "higher_is_better": c.task.higher_is_better,
        "training": _training(source),
        "evaluated": {"source": source.text, "kind": source.kind, "label": label,
                      "weights_sha256": weights_fingerprint(c.model), **facts},
        "seed": recipe.seed,
        "device": str(c.device),
        "versions": results.versions(),
        "status": results.FINISHED,
        **evaluation,
        "report": c.task.report(c.model),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _training(source: Source) -> dict[str, Any] | None:
    """The source run's training facts (None for models trained elsewhere)."""
    if source.kind != "run":
        return None
    return (results.read_metrics(source.path) or {}).get("training")


def _open(recipe: Recipe, source: Source, output: str | None, resume: bool
          ) -> tuple[Path, RunLock]:
    """The locked eval directory: a new one (config written), or with ``resume`` the one to
    continue (``--output``, else the newest under ``runs/<name>-eval``)."""
    output_dir = Path(output) if output else None
    root = results.default_runs_root(f"{recipe.name}-eval")
    if resume:
        out = results.find_resumable(output_dir, root)
        try:
            saved = json.loads((out / SOURCE_FILE).read_text())["source"]
        except (OSError, ValueError, KeyError, TypeError):
            raise SamatError(f"--resume: {out} is not an evaluation ({SOURCE_FILE} missing or "
                             "unreadable); start a new evaluation") from None
        if saved != source.text or results.read_config(out) != recipe.as_dict():
            raise SamatError(f"--resume: {out} evaluated another source or recipe; resume with "
                             "the same SOURCE, RECIPE and overrides, or start a new evaluation")
        if results.run_status(results.read_metrics(out)) == results.FINISHED:
            raise SamatError(f"--resume: {out} is finished (see its metrics.json); start a new "
                             "evaluation to evaluate again")
    elif output_dir is not None:
        results.check_output_dir(output_dir, "--output")
        if results.is_run_dir(output_dir):
            raise SamatError(f"--output: {output_dir} already holds a run or evaluation; pass "
                             "--resume to continue it or choose another directory")
        results.make_dirs(output_dir, "--output")
        out = output_dir
    else:
        results.check_output_dir(root, "name")
        out = results.new_run_dir(root)
    lock = RunLock(out)
    if not acquire_unless_alive(lock, lambda holder: log.info(
            "%s: the process that held it (%s) is gone; waiting for its lock to expire", out,
            holder.describe())):
        holder = lock.holder()
        raise SamatError(f"{out} is in use by {holder.describe() if holder else 'another'}")
    if not resume:
        results.write_json(out / SOURCE_FILE, {"source": source.text, "kind": source.kind})
        results.write_config(out, recipe.as_dict())
    return out, lock

