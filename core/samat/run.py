"""``samat run``: recipe -> components -> run directory -> training -> evaluation -> metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samat import distributed, results
from samat.build import (
    check_components,
    create_attack,
    create_input_perturbation,
    create_task,
    create_weight_perturbation,
    task_params,
)
from samat.data import device_batches, eval_loader
from samat.errors import SamatError
from samat.interfaces import Attack, InputPerturbation, Task, WeightPerturbation
from samat.recipe import Recipe, recipe_from_dict
from samat.seeding import seed_everything
from samat.train import Trainer

log = logging.getLogger("samat")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; an unavailable device is a user error. Under
    torchrun, ``cuda`` is ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SamatError(f"device: '{name}' requested but CUDA is not available; use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SamatError("device: 'mps' requested but not available; use auto or cpu")
    if distributed.launched():
        if name == "cuda":
            return torch.device("cuda", distributed.local_rank())
        if name != "cpu":
            raise SamatError(f"device: '{name}' under torchrun; use auto, cuda (each process "
                             "takes cuda:LOCAL_RANK) or cpu")
    return torch.device(name)


@dataclass
class Components:
    """Everything a run is made of, built and validated before anything is written."""

    task: Task
    model: nn.Module
    weight: WeightPerturbation
    input: InputPerturbation
    attacks: list[tuple[str, Attack]]
    device: torch.device


def build(recipe: Recipe) -> Components:
    """Create task, model, perturbations and attacks; raises SamatError on any bad input."""
    device = resolve_device(recipe.device)
    check_components(recipe)
    seed_everything(recipe.seed)
    task = create_task(recipe.task.name, "task", **_task_params(recipe))
    model = task.build_model().to(device)
    t = recipe.train
    optimizer_params = dict(t.optimizer.params)
    weight = create_weight_perturbation(
        t.weight_perturbation.name, model.parameters(), t.optimizer.name, optimizer_params,
        path="train.weight_perturbation", optimizer_path="train.optimizer", task=task,
        **t.weight_perturbation.params,
    )
    input_perturbation = create_input_perturbation(
        t.input_perturbation.name, "train.input_perturbation", task=task,
        **t.input_perturbation.params,
    )
    attacks = [
        (a.column(), create_attack(a.name, model, path=f"eval.attacks.{i}", task=task,
                                        **a.params))
        for i, a in enumerate(recipe.eval.attacks)
    ]
    return Components(task, model, weight, input_perturbation, attacks, device)


def prepare(recipe: Recipe) -> tuple[Components, Trainer]:
    """Everything a run needs, validated: the components and their trainer."""
    c = build(recipe)
    return c, Trainer(recipe, c.task, c.model, c.weight, c.input, c.device)


def _task_params(recipe: Recipe) -> dict[str, Any]:
    """Task parameters; the run seed is passed as ``seed`` if the task takes one."""
    return task_params(recipe.task.name, recipe.task.params, recipe.seed)


def evaluate(components: Components, recipe: Recipe) -> dict[str, Any]:
    """Natural metric and every attack's metric on the first ``eval.n_examples`` examples, in
    float32; under torchrun sharded across ranks (:func:`samat.distributed.evaluate`)."""
    c = components
    key = c.task.metric
    dataset = c.task.eval_dataset()

    def batches(rank: int, world_size: int) -> Any:
        loader = eval_loader(c.task, dataset, recipe.eval.batch_size, recipe.eval.n_examples,
                             rank=rank, world_size=world_size)
        return device_batches(loader, c.device, recipe.train.channels_last)

    natural = distributed.evaluate(c.task, c.model, batches)
    log.info("natural %s: %.2f", key, natural[key])
    attacked = []
    for label, attack in c.attacks:
        start = time.perf_counter()
        values = distributed.evaluate(c.task, c.model, batches, attack)
        values["seconds"] = time.perf_counter() - start
        log.info("%s %s: %.2f", label, key, values[key])
        attacked.append({"label": label, "attack": attack.describe(), **values})
    average = (sum(a[key] for a in attacked) / len(attacked)) if attacked else None
    return {"natural": natural, "attacks": attacked, "average_under_attack": average}


def run(
    recipe_path: str | Path,
    overrides: list[str] = (),
    *,
    resume: bool = False,
    recipe: Recipe | None = None,
) -> dict[str, Any]:
    """Run a recipe end to end and return the ``metrics.json`` content.

    Under torchrun every process calls it; rank 0 alone writes the run directory."""
    from samat.recipe import load_recipe

    recipe = recipe or load_recipe(recipe_path, overrides)
    with distributed.process_group(resolve_device(recipe.device)) as world:
        components, trainer = prepare(recipe)
        run_dir = distributed.on_main(lambda: _run_dir(recipe, resume))
        handler = _log_to(run_dir / results.LOG) if world.is_main else None
        try:
            return _train_and_evaluate(recipe, components, trainer, run_dir,
                                       Path(recipe_path), resume)
        finally:
            if handler is not None:
                logging.getLogger("samat").removeHandler(handler)
                handler.close()


def _run_dir(recipe: Recipe, resume: bool) -> Path:
    """The run directory: the one to resume, or a new one holding ``config.yaml``."""
    output_dir = Path(recipe.output_dir) if recipe.output_dir else None
    runs_root = output_dir or results.default_runs_root(recipe.name)
    if resume:
        run_dir = results.find_resumable(output_dir, runs_root)
        saved = recipe_from_dict(results.read_config(run_dir))
        _check_same(saved, recipe, run_dir)
    elif output_dir is not None and results.is_run_dir(output_dir):
        raise SamatError(f"output_dir: {output_dir} already holds a run; pass --resume to "
                         "continue it or choose another output_dir")
    else:
        run_dir = output_dir or results.new_run_dir(runs_root)
        (run_dir / results.CHECKPOINT.parent).mkdir(parents=True, exist_ok=True)
        results.write_config(run_dir, recipe.as_dict())
    return run_dir


def _check_same(saved: Recipe, current: Recipe, run_dir: Path) -> None:
    a, b = saved.as_dict(), current.as_dict()
    for key in ("device", "output_dir", "name"):
        a.pop(key, None), b.pop(key, None)
    if a != b:
        diff = [k for k in a if a.get(k) != b.get(k)]
        raise SamatError(
            f"--resume: the recipe differs from the one {run_dir} was started with "
            f"(keys: {', '.join(diff)}; seed {saved.seed} vs {current.seed}); "
            f"resume with the same recipe and overrides, or start a new run"
        )


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("samat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def _train_and_evaluate(
    recipe: Recipe, c: Components, trainer: Trainer, run_dir: Path, recipe_path: Path,
    resume: bool,
) -> dict[str, Any]:
    checkpoint = run_dir / results.CHECKPOINT
    if resume:
        trainer.load(checkpoint)
        log.info("resumed %s at epoch %d, step %d", run_dir, trainer.progress.epoch,
                 trainer.progress.step)
    else:
        log.info("run %s: recipe %s, device %s, %d process(es)", run_dir, recipe_path, c.device,
                 trainer.world.size)
    main = trainer.world.is_main
    history = run_dir / results.HISTORY
    progress = trainer.fit(checkpoint if main else None, history if main else None)
    if main:
        for label, attack in c.attacks:
            attack.set_output(run_dir, label)
    evaluation = evaluate(c, recipe)
    optimizer = {"name": recipe.train.optimizer.name, **recipe.train.optimizer.params}
    metrics = {
        "recipe": {"path": str(recipe_path), "name": recipe.name},
        "run_dir": str(run_dir),
        "task": {"name": recipe.task.name, "params": _task_params(recipe), **c.task.describe()},
        "metric": c.task.metric,
        "higher_is_better": c.task.higher_is_better,
        **evaluation,
        "training": {
            "weight_perturbation": c.weight.describe(),
            "input_perturbation": c.input.describe(),
            "optimizer": optimizer,
            "schedule": recipe.as_dict()["train"]["schedule"],
            "epochs": trainer.epochs,
            "steps": progress.step,
            "batch_size": recipe.train.batch_size,
            "world_size": trainer.world.size,
            "train_time_s": progress.train_time,
            "mean_step_time_s": progress.train_time / max(progress.step, 1),
            "final": progress.history[-1] if progress.history else None,
        },
        "report": c.task.report(c.model),
        "seed": recipe.seed,
        "device": str(c.device),
        "versions": results.versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if main:
        results.write_json(run_dir / results.METRICS, metrics)
        from samat.plugins import call_result_hooks

        call_result_hooks(metrics, str(run_dir))
    return metrics
