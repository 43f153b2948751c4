"""``samat run``: recipe -> components -> run directory -> training -> evaluation -> metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samat import distributed, results
from samat.atomic import remove_temporaries
from samat.distributed import resolve_device
from samat.errors import SamatError
from samat.evaluation import evaluate
from samat.export import export_model
from samat.factories import (
    check_components,
    create_attack,
    create_input_perturbation,
    create_loggers,
    create_measure,
    create_task,
    create_weight_perturbation,
    task_params,
)
from samat.interfaces import Attack, InputPerturbation, Measure, Task, WeightPerturbation
from samat.locking import RunLock, acquire_unless_alive
from samat.plugins import call_result_hooks
from samat.probe import check_attacks
from samat.recipe import Recipe, flatten, load_recipe, located, recipe_from_dict
from samat.seeding import seed_everything
from samat.tracking import RunEvents
from samat.train import Diverged, Trainer

log = logging.getLogger("samat")


@dataclass
class Components:
    """Everything a run is made of, built and validated before anything is written."""

    task: Task
    model: nn.Module
    weight: WeightPerturbation
    input: InputPerturbation
    attacks: list[tuple[str, Attack]]
    device: torch.device
    eval_attack: tuple[str, Attack] | None = None  # train.eval_attack (periodic evaluation)
    measures: list[tuple[str, Measure]] = field(default_factory=list)  # eval.measures
    loggers: list[tuple[str, Any]] = field(default_factory=list)  # logging: (name, logger)


def build_components(recipe: Recipe, task: Task | None = None) -> Components:
    """Create task (unless given, built from this recipe's task config), model, perturbations
    and attacks, and check every attack against the model (:func:`samat.probe.check_attacks`);
    raises SamatError on any bad input (naming the fragment's ``file:line`` if one set the
    key: :func:`samat.recipe.located`)."""
    with located(recipe.origin):
        return _build(recipe, task)


def _build(recipe: Recipe, task: Task | None) -> Components:
    device = resolve_device(recipe.device)
    check_components(recipe)
    seed_everything(recipe.seed)
    task = task or create_task(recipe.task.name, "task", **_task_params(recipe))
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
    e = t.eval_attack
    eval_attack = None if e is None else (
        e.column(), create_attack(e.name, model, path="train.eval_attack", task=task, **e.params))
    checked = [(f"eval.attacks.{i}", attack) for i, (_, attack) in enumerate(attacks)]
    if eval_attack is not None:
        checked.append(("train.eval_attack", eval_attack[1]))
    check_attacks(checked, task, model, recipe.task.name, device)
    measures = [(m.label or m.name, create_measure(m.name, path=f"eval.measures.{i}",
                                                   run_seed=recipe.seed, **m.params))
                for i, m in enumerate(recipe.eval.measures)]
    loggers = create_loggers(recipe.logging)  # every rank: the same errors everywhere
    return Components(task, model, weight, input_perturbation, attacks, device, eval_attack,
                      measures, loggers)


def prepare(recipe: Recipe, task: Task | None = None) -> tuple[Components, Trainer]:
    """Everything a run needs, validated: the components and their trainer."""
    c = build_components(recipe, task)
    return c, Trainer(recipe, c.task, c.model, c.weight, c.input, c.device, c.eval_attack)


def _task_params(recipe: Recipe) -> dict[str, Any]:
    """Task parameters; the run seed is passed as ``seed`` if the task takes one."""
    return task_params(recipe.task.name, recipe.task.params, recipe.seed)


def run(
    recipe_path: str | Path,
    overrides: list[str] = (),
    *,
    resume: bool = False,
    recipe: Recipe | None = None,
    lock: RunLock | None = None,
) -> dict[str, Any]:
    """Run a recipe end to end and return the ``metrics.json`` content.

    The run directory is locked for the whole run (:mod:`samat.locking`); ``lock`` is one the
    caller (a sweep) already holds on ``output_dir``. Resuming a finished run returns its
    results without re-running anything. Raises :class:`samat.train.Diverged` after recording
    ``"status": "diverged"`` when training met a non-finite value. Under torchrun every
    process calls it; rank 0 alone writes the run directory."""
    recipe = recipe or load_recipe(recipe_path, overrides)
    with distributed.process_group(resolve_device(recipe.device)) as world:
        components, trainer = prepare(recipe)
        held: list[RunLock] = []
        try:
            run_dir, mode = distributed.on_main(lambda: _open(recipe, resume, lock, held))
            if mode == "finished":
                log.info("%s finished already; its results (nothing was re-run):", run_dir)
                return results.read_metrics(run_dir)
            if mode == "resume":
                trainer.load(run_dir / results.CHECKPOINT)
            handler = _log_to(run_dir / results.LOG) if world.is_main else None
            p = trainer.progress
            trainer.events = RunEvents(
                run_dir, components.loggers, recipe.as_dict(), step=p.step, epoch=p.epoch,
                total_steps=trainer.total_steps, resumed_at=p.step if mode == "resume" else None,
            ) if world.is_main else None
            try:
                with trainer.events or nullcontext():
                    return _train_and_evaluate(recipe, components, trainer, run_dir,
                                               Path(recipe_path), mode == "resume",
                                               held[0].verify if held else None)
            finally:
                if handler is not None:
                    logging.getLogger("samat").removeHandler(handler)
                    handler.close()
        finally:
            for own in held:
                own.release()


def _open(recipe: Recipe, resume: bool, lock: RunLock | None, held: list[RunLock]
          ) -> tuple[Path, str]:
    """Lock the run directory and say what to do in it: ``new`` (config written), ``resume``
    (checked against the saved config) or ``finished`` (results exist). Appends a lock this
    call took to ``held``; nothing is written on error."""
    output_dir = Path(recipe.output_dir) if recipe.output_dir else None
    if resume:
        run_dir = results.find_resumable(output_dir, output_dir or
                                         results.default_runs_root(recipe.name))
        _lock(run_dir, lock, held)
        _check_same(_saved_recipe(run_dir), recipe, run_dir)
        if results.run_status(results.read_metrics(run_dir)) == results.FINISHED:
            return run_dir, "finished"
        if not (run_dir / results.CHECKPOINT).is_file():
            raise SamatError(
                f"--resume: {run_dir} stopped before its first checkpoint (nothing to resume); "
                "run without --resume to start again (that directory can be deleted)")
        remove_temporaries(run_dir / results.CHECKPOINT.parent)
        remove_temporaries(run_dir)
        return run_dir, "resume"
    if output_dir is None:
        root = results.default_runs_root(recipe.name)
        results.check_output_dir(root, "name")
        run_dir = results.new_run_dir(root)
    else:
        results.check_output_dir(output_dir)
        if results.is_run_dir(output_dir):
            raise SamatError(f"output_dir: {output_dir} already holds a run; pass --resume to "
                             "continue it or choose another output_dir")
        results.make_dirs(output_dir)
        run_dir = output_dir
    _lock(run_dir, lock, held)
    if results.is_run_dir(run_dir):  # another process started there since the check above
        raise SamatError(f"output_dir: {run_dir} already holds a run; pass --resume to "
                         "continue it or choose another output_dir")
    results.make_dirs(run_dir / results.CHECKPOINT.parent)
    results.write_config(run_dir, recipe.as_dict())
    return run_dir, "new"


def _saved_recipe(run_dir: Path) -> Recipe:
    """The recipe ``run_dir`` was started with; an invalid one names its file."""
    try:
        return recipe_from_dict(results.read_config(run_dir))
    except SamatError as exc:
        if str(exc).startswith(str(run_dir / results.CONFIG)):
            raise
        raise SamatError(f"{run_dir / results.CONFIG}: not a valid samat config ({exc}); "
                         "restore it or start a new run") from None


def _lock(run_dir: Path, lock: RunLock | None, held: list[RunLock]) -> None:
    """Take ``run_dir``'s lock (or check that ``lock``, the caller's, is that lock)."""
    if lock is not None:
        if lock.directory.resolve() != run_dir.resolve():
            raise SamatError(f"internal: lock for {lock.directory} given for {run_dir}")
        return
    own = RunLock(run_dir)
    if not acquire_unless_alive(own, lambda holder: log.info(
            "%s: the process that held it (%s) is gone; waiting for its lock to expire",
            run_dir, holder.describe())):
        holder = own.holder()
        who = holder.describe() if holder else "another process"
        raise SamatError(f"{run_dir} is in use by {who}; wait for it to finish, or stop it")
    held.append(own)


FILE_ONLY = "samat_file_only"
"""A log record with this attribute set goes to the run's log.txt, not to the terminal."""

RESUME_IGNORES = ("device", "output_dir", "name", "description", "train.on_nonfinite",
                  "logging")
"""Recipe keys that may differ on ``--resume`` (where the run lives, how to treat a non-finite
step, e.g. resuming a diverged run with ``train.on_nonfinite=skip``, and where it logs)."""


def _check_same(saved: Recipe, current: Recipe, run_dir: Path) -> None:
    a, b = flatten(saved.as_dict()), flatten(current.as_dict())
    diff = [k for k in sorted(set(a) | set(b), key=lambda k: (k not in a, k))
            if a.get(k) != b.get(k) and k not in RESUME_IGNORES]
    if diff:
        shown = "; ".join(f"{k}: {_value(a.get(k))} vs {_value(b.get(k))}" for k in diff[:5])
        more = f" (and {len(diff) - 5} more)" if len(diff) > 5 else ""
        raise SamatError(
            f"--resume: the recipe differs from the one {run_dir} was started with (saved vs "
            f"now): {shown}{more}; resume with the same recipe and overrides, or start a new run"
        )


def _value(value: Any) -> str:
    return "(absent)" if value is None else str(value)


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("samat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def _train_and_evaluate(
    recipe: Recipe, c: Components, trainer: Trainer, run_dir: Path, recipe_path: Path,
    resume: bool, verify: Callable[[], None] | None,
) -> dict[str, Any]:
    checkpoint = run_dir / results.CHECKPOINT
    if resume:
        log.info("resumed %s at epoch %d, step %d", run_dir, trainer.progress.epoch,
                 trainer.progress.step)
    else:
        log.info("run %s: recipe %s, device %s, %d process(es)", run_dir, recipe_path, c.device,
                 trainer.world.size)
    main = trainer.world.is_main
    history = run_dir / results.HISTORY
    try:
        progress = trainer.fit(checkpoint if main else None, history if main else None, verify)
    except Diverged as diverged:
        if main:
            _record_divergence(recipe, c, trainer, run_dir, recipe_path, diverged, verify)
        raise
    if main:
        if verify is not None:
            verify()
        _export(recipe, c, trainer, run_dir)
        for label, attack in c.attacks:
            attack.set_output(run_dir, label)
    evaluated = trainer.use_checkpoint(run_dir)  # eval.checkpoint: last or best weights
    events = trainer.events
    evaluation = evaluate(c, recipe, run_dir if main else None, on_result=None if events is None
                          else lambda label, values, n: events.eval_result(label, values,
                                                                           final=True,
                                                                           n_examples=n))
    metrics = {
        **_facts(recipe, c, trainer, run_dir, recipe_path),
        "status": results.FINISHED,
        "checkpoint": evaluated,
        **evaluation,
        "report": c.task.report(c.model),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    metrics["training"].update({
        "final": progress.history[-1] if progress.history else None,
    })
    if main:
        if verify is not None:
            verify()
        results.write_json(run_dir / results.METRICS, metrics)
        if events is not None:
            events.metrics = metrics
        call_result_hooks(metrics, str(run_dir))
    return metrics


def _export(recipe: Recipe, c: Components, trainer: Trainer, run_dir: Path) -> None:
    """``model.safetensors`` (or the task's own format) and ``model.json`` in ``run_dir``."""
    trained = {"recipe": recipe.name, "task_params": _task_params(recipe), "seed": recipe.seed,
               "weight_perturbation": c.weight.describe(), "input_perturbation": c.input.describe(),
               "epochs": trainer.epochs, "steps": trainer.progress.step}
    written = export_model(c.task, recipe.task.name, trainer.model, run_dir, trained)
    if written is not None:
        log.info("model exported: %s", written)


def _facts(recipe: Recipe, c: Components, trainer: Trainer, run_dir: Path, recipe_path: Path
           ) -> dict[str, Any]:
    """What every ``metrics.json`` records about the run, whatever its outcome."""
    progress = trainer.progress
    optimizer = {"name": recipe.train.optimizer.name, **recipe.train.optimizer.params}
    training = {
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
        "on_nonfinite": recipe.train.on_nonfinite,
        "skipped_steps": progress.skipped,
        **({"best": progress.best} if recipe.train.keep_best else {}),
    }
    return {
        "recipe": {"path": str(recipe_path), "name": recipe.name},
        "run_dir": str(run_dir),
        "task": {"name": recipe.task.name, "params": _task_params(recipe), **c.task.describe()},
        "metric": c.task.metric,
        "higher_is_better": c.task.higher_is_better,
        "training": training,
        "seed": recipe.seed,
        "device": str(c.device),
        "versions": results.versions(),
    }


def _record_divergence(
    recipe: Recipe, c: Components, trainer: Trainer, run_dir: Path, recipe_path: Path,
    diverged: Diverged, verify: Callable[[], None] | None,
) -> None:
    """``metrics.json`` with ``"status": "diverged"``, and the log line saying what is kept."""
    kept = trainer.checkpointed
    metrics = {
        **_facts(recipe, c, trainer, run_dir, recipe_path),
        "status": results.DIVERGED,
        "diverged": {**diverged.record(), "on_nonfinite": recipe.train.on_nonfinite,
                     "checkpoint": kept},
        "natural": None,
        "attacks": [],
        "average_under_attack": None,
        "report": {},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if verify is not None:
        verify()
    results.write_json(run_dir / results.METRICS, metrics)
    if trainer.events is not None:
        trainer.events.metrics = metrics
    where = (f"the last finite checkpoint (epoch {kept['epoch']}, step {kept['step']}) is kept"
             if kept else "no checkpoint was written")
    log.error("%s; %s; %s records status: diverged", diverged, where, run_dir / results.METRICS,
              extra={FILE_ONLY: True})  # the CLI prints the error line itself
    diverged.args = (f"{diverged}; {where}; {run_dir / results.METRICS} records status: "
                     "diverged (lower the learning rate or radius, or set "
                     "train.on_nonfinite=skip to skip such steps)",)
