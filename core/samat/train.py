"""The one trainer: input perturbation, then weight perturbation, every step.

Checkpoints (model, optimizer incl. SAM's base optimizer, scheduler, fp16 loss scaler, RNG
states, position) are written every epoch and optionally every ``checkpoint_every`` steps;
:meth:`Trainer.fit` resumes from one and ends exactly where an uninterrupted run would. With
``keep_best`` the best periodic evaluation's checkpoint is kept beside (:mod:`samat.best`). Under
torchrun the model is wrapped in DistributedDataParallel and each replica trains on its part of
every global batch (docs/distributed.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm import tqdm

from samat import distributed
from samat.atomic import write_atomic
from samat.best import load_weights, periodic_evaluation, select
from samat.data import batches_per_epoch, device_batches, eval_loader, to_device, train_loader
from samat.errors import DIVERGED_EXIT, STOPPED_EXIT, SamatError
from samat.interfaces import (
    Attack,
    InputPerturbation,
    Metric,
    NonFiniteStep,
    StepResult,
    Task,
    WeightPerturbation,
)
from samat.interrupts import stop_requested
from samat.precision import check_precision, grad_scaler, with_autocast
from samat.recipe import Recipe
from samat.results import BEST_CHECKPOINT, CHECKPOINT, write_history
from samat.schedules import build_scheduler
from samat.seeding import rng_state, set_rng_state
from samat.step import train_step
from samat.tracking import RunEvents

log = logging.getLogger("samat")

LOG_EVERY = 10
"""Steps between progress updates: the progress bar's numbers and a
:class:`samat.StepLogged` event (also after each epoch's last batch and the run's last step)."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint.

    ``loss_sum``, ``loss_count`` and ``metric_state`` are the current epoch's running sums, so
    that an epoch resumed from a mid-epoch checkpoint reports the same train loss and metric
    as an uninterrupted one.
    """

    epoch: int = 0  # epochs fully completed
    batch: int = 0  # batches done inside the current epoch
    step: int = 0  # optimisation steps done in total
    train_time: float = 0.0  # seconds inside training steps
    history: list[dict[str, Any]] = field(default_factory=list)
    loss_sum: float = 0.0  # this epoch's finite step losses, summed
    loss_count: int = 0
    metric_state: list[Tensor] | None = None  # this epoch's train metric (Metric.state())
    skipped: int = 0  # steps skipped on a non-finite value (train.on_nonfinite=skip), in total
    best: dict[str, Any] | None = None  # the evaluation best.pt holds (train.keep_best)


class Stopped(SamatError):
    """Training checkpointed and stopped because the process was asked to (a preemption or
    time-limit signal, :mod:`samat.interrupts`); ``--resume`` continues exactly."""

    exit_code = STOPPED_EXIT


class Diverged(SamatError):
    """Training met a non-finite value and stopped (``train.on_nonfinite: stop``, or weights
    that are no longer finite); the last checkpoint on disk is still finite."""

    exit_code = DIVERGED_EXIT

    def __init__(self, what: str, value: float, epoch: int, batch: int, batches: int,
                 step: int) -> None:
        """``what``: the finding, e.g. ``"loss is nan"``; ``value``: the non-finite value."""
        self.what, self.value = what, value
        self.epoch, self.batch, self.step = epoch, batch, step
        super().__init__(f"training diverged at epoch {epoch}, batch {batch}/{batches} (step "
                         f"{step}): {what}")

    def record(self) -> dict[str, Any]:
        """What ``metrics.json`` records under ``diverged``."""
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step, "what": self.what,
                "value": str(self.value)}


class Trainer:
    """Fits ``model`` on ``task`` as ``recipe.train`` says.

    ``model`` stays the plain module (checkpoints, evaluation, attacks); training runs through
    :attr:`forward_model` (compiled and autocast as asked; input perturbations use it) and
    :attr:`step_model` (that, in DistributedDataParallel under torchrun; weight perturbations
    step it).
    """

    def __init__(
        self,
        recipe: Recipe,
        task: Task,
        model: nn.Module,
        weight_perturbation: WeightPerturbation,
        input_perturbation: InputPerturbation,
        device: torch.device,
        eval_attack: tuple[str, Attack] | None = None,
    ) -> None:
        self.recipe, self.cfg = recipe, recipe.train
        self.eval_attack = eval_attack
        self.task, self.model, self.device = task, model, device
        self.weight, self.input = weight_perturbation, input_perturbation
        self.world = distributed.world()
        distributed.check_train(self.cfg, self.world.size, device)
        check_precision(self.cfg.precision, device)
        self.train_set = task.train_dataset()
        self.eval_set = task.eval_dataset()
        self.steps_per_epoch = batches_per_epoch(len(self.train_set), self.cfg.batch_size,
                                                 self.cfg.drop_last, self.world.size)
        if self.steps_per_epoch < 1:
            raise SamatError(
                f"train.batch_size: {self.cfg.batch_size} exceeds the {len(self.train_set)} "
                "training examples with train.drop_last=true; lower it or set drop_last=false"
            )
        if self.cfg.iterations is not None:
            self.total_steps = self.cfg.iterations
            self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        else:
            self.epochs = self.cfg.epochs or 1
            self.total_steps = self.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(
            weight_perturbation.optimizer, self.cfg.schedule, self.total_steps,
            self.steps_per_epoch,
        )
        self.scaler = grad_scaler(self.cfg.precision, device)
        weight_perturbation.scaler = self.scaler
        weight_perturbation.agree = distributed.all_true
        self._batches = self.steps_per_epoch
        self._verify: Callable[[], None] | None = None
        self.forward_model, self.step_model = self._training_models()
        self._statistics = _bn_statistics(self.model) if self.cfg.on_nonfinite == "skip" else []
        self._statistics_copy = [torch.empty_like(t) for t in self._statistics]
        self.progress = Progress()
        self.checkpointed: dict[str, int] | None = None
        """``{"epoch", "step"}`` of the checkpoint on disk (written or loaded), if any."""
        self.events: RunEvents | None = None
        """Where progress and periodic evaluations are sent (rank 0; None: nowhere)."""

    def _training_models(self) -> tuple[nn.Module, nn.Module]:
        """``model`` prepared as ``train`` asks: SyncBatchNorm (under torchrun), channels_last,
        ``torch.compile``, autocast; then the same in DistributedDataParallel (if distributed).
        Parameters stay the model's own, so the optimizer and checkpoints are unaffected."""
        cfg = self.cfg
        if cfg.sync_bn and self.world.distributed:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        net = torch.compile(self.model) if cfg.compile else self.model
        net = with_autocast(net, cfg.precision, self.device)
        return net, distributed.data_parallel(net, self.device)

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, path: Path, progress: dict[str, Any] | None = None) -> None:
        """Write a checkpoint atomically and durably; ``progress`` replaces the in-memory
        :class:`Progress` (mid-epoch checkpoints store the sums of every replica)."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.weight.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
            "rng": rng_state(),
            "progress": progress if progress is not None else asdict(self.progress),
        }
        write_atomic(path, lambda stream: torch.save(state, stream))
        self.checkpointed = {"epoch": state["progress"]["epoch"],
                             "step": state["progress"]["step"]}

    def load(self, path: Path) -> None:
        """Restore everything :meth:`save` wrote (``weights_only=True``); a checkpoint that is
        unreadable or does not fit this recipe is a one-line :class:`SamatError`."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except FileNotFoundError:
            raise SamatError(f"--resume: {path} is missing; the run has no checkpoint to "
                             "continue from (run without --resume to start again)") from None
        except Exception as exc:  # torch raises many kinds for truncated or foreign files
            raise _bad_checkpoint(path, f"unreadable ({_first_line(exc)})") from None
        expected = {"model", "optimizer", "scheduler", "rng", "progress"}
        if not isinstance(state, dict) or not expected <= set(state):
            missing = sorted(expected - set(state)) if isinstance(state, dict) else ["all"]
            raise _bad_checkpoint(path, f"not a samat checkpoint (missing {', '.join(missing)})")
        if self.scaler is not None and "scaler" not in state:
            raise _bad_checkpoint(path, "written without fp16 loss scaling (train.precision)")
        steps = (
            ("model", lambda: self.model.load_state_dict(state["model"])),
            ("optimizer", lambda: self.weight.optimizer.load_state_dict(state["optimizer"])),
            ("scheduler", lambda: self.scheduler.load_state_dict(state["scheduler"])),
            ("scaler", lambda: self.scaler is None or self.scaler.load_state_dict(state["scaler"])),
            ("rng", lambda: set_rng_state(_cpu_torch_rng(state["rng"]))),
            ("progress", lambda: setattr(self, "progress", _progress(state["progress"]))),
        )
        for part, restore in steps:
            try:
                restore()
            except Exception as exc:  # mismatched shapes, keys, groups or types
                raise _bad_checkpoint(
                    path, f"not for this recipe: its {part} does not fit ({_first_line(exc)})"
                ) from None
        self.checkpointed = {"epoch": self.progress.epoch, "step": self.progress.step}
        if not self.world.is_main:  # rank 0 alone carries the epoch's sums of every replica
            p = self.progress
            p.loss_sum, p.loss_count, p.metric_state = 0.0, 0, None

    def weights_finite(self) -> bool:
        """Whether every parameter and floating buffer of the model is finite."""
        tensors = [t for t in (*self.model.parameters(), *self.model.buffers())
                   if t.is_floating_point()]
        return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def _checked_save(self, path: Path | None, progress: dict[str, Any] | None = None) -> None:
        """:meth:`save`, refusing non-finite weights (the last finite checkpoint is kept)."""
        if not self.weights_finite():
            self._diverged("the weights are no longer finite", math.nan)
        if path is not None:
            if self._verify is not None:
                self._verify()
            self.save(path, progress)

    # -- training ----------------------------------------------------------------------------
    def fit(self, checkpoint: Path | None = None, history_path: Path | None = None,
            verify: Callable[[], None] | None = None) -> Progress:
        """Train until the budget is spent, checkpointing to ``checkpoint`` if given (after
        ``verify()``, e.g. that this process still holds the run's lock).

        Raises :class:`Diverged` on a non-finite loss, gradient norm or weights unless
        ``train.on_nonfinite`` is ``skip`` (weights that are no longer finite always stop).
        Under torchrun every rank calls it; pass the paths on rank 0 only."""
        self._verify = verify
        p, cfg, w = self.progress, self.cfg, self.world
        loss_fn = self.task.loss
        while p.step < self.total_steps:
            loader = train_loader(self.task, self.train_set, cfg.batch_size, self.recipe.seed,
                                  p.epoch, cfg.num_workers, cfg.drop_last, w.rank, w.size)
            self._batches = len(loader)
            batches = iter(loader)
            if p.batch:  # resuming mid-epoch: replay the data order, keep the saved RNG
                saved = rng_state()
                for _ in range(p.batch):
                    next(batches)
                set_rng_state(saved)
            self.step_model.train()
            metric = self._epoch_metric()
            last_loss = math.nan
            bar = tqdm(batches, total=len(loader), initial=p.batch,
                       disable=None if w.is_main else True, leave=False,
                       desc=f"epoch {p.epoch + 1}/{self.epochs}", unit="batch")
            for x, y in bar:
                x = to_device(x, self.device, cfg.channels_last)
                y = to_device(y, self.device)
                start = time.perf_counter()
                result = self._step(x, y, loss_fn)
                if result is not None and self.scaler is not None:
                    self.scaler.update()
                self.scheduler.step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                p.train_time += time.perf_counter() - start
                p.step += 1
                p.batch += 1
                if result is not None and self._finite_after(result):
                    last_loss = float(result.loss)
                    p.loss_sum += last_loss
                    p.loss_count += 1
                    metric.update(result.output, y)
                if (p.batch % LOG_EVERY == 0 or p.batch == len(loader)
                        or p.step >= self.total_steps):
                    self._log_progress(bar, last_loss, metric)
                if p.step >= self.total_steps:
                    break
                if p.batch < len(loader) and ((cfg.checkpoint_every
                                               and p.step % cfg.checkpoint_every == 0)
                                              or self._stop_reason()):
                    self._checked_save(checkpoint, self._mid_epoch_progress(metric))
                    self._stop_if_requested()
            bar.close()
            if self._end_epoch(metric):  # best.pt before last.pt: no best recorded off disk
                self._checked_save(checkpoint and checkpoint.parent / BEST_CHECKPOINT.name)
            self._checked_save(checkpoint)
            if history_path is not None:
                write_history(history_path, p.history)
            if p.step < self.total_steps:
                self._stop_if_requested()
        return p

    def _log_progress(self, bar: tqdm, loss: float, metric: Metric) -> None:
        """The progress bar's numbers, and the same as a :class:`samat.StepLogged` event."""
        p, key = self.progress, self.task.metric
        value = metric.compute()[key]
        speed = p.step / max(p.train_time, 1e-9)
        bar.set_postfix({"loss": f"{loss:.4f}", key: f"{value:.2f}", "steps/s": f"{speed:.1f}"})
        if self.events is not None:
            self.events.step_logged(p.step, p.epoch + 1, {
                "loss": loss, key: value, "lr": self.weight.optimizer.param_groups[0]["lr"],
                "steps_per_s": speed})

    def _stop_reason(self) -> str | None:
        """Why this process was asked to stop (:mod:`samat.interrupts`), agreed by every
        replica under torchrun; None to go on."""
        reason = stop_requested()
        if self.world.distributed and not distributed.all_true(reason is None):
            return reason or "stop requested on another replica"
        return reason

    def _stop_if_requested(self) -> None:
        """Raise :class:`Stopped` if a stop was requested (a checkpoint was just written)."""
        reason = self._stop_reason()
        if reason is not None:
            p = self.progress
            raise Stopped(f"stopped ({reason}) at epoch {p.epoch + 1}, batch {p.batch} (step "
                          f"{p.step}) after writing a checkpoint; continue with --resume")

    def _step(self, x: Any, y: Tensor, loss_fn: Any) -> StepResult | None:
        """Input perturbation, then weight perturbation; None if the step was skipped on a
        non-finite value (``train.on_nonfinite: skip``)."""
        if self._statistics:  # a skipped step must not leave its batch in BatchNorm statistics
            torch._foreach_copy_(self._statistics_copy, self._statistics)
        try:
            return train_step(self.input, self.weight, self.step_model, loss_fn, x, y,
                              perturb_model=self.forward_model)
        except NonFiniteStep as bad:
            self.weight.optimizer.zero_grad(set_to_none=True)
            if self._statistics:
                torch._foreach_copy_(self._statistics, self._statistics_copy)
            self._nonfinite(bad.what, bad.value)
            return None

    def _finite_after(self, result: StepResult) -> bool:
        """Whether an applied step's loss is finite on every replica (a weight perturbation
        that does not check before applying is caught here, one step late)."""
        loss = float(result.loss)
        if self.weight.agree(math.isfinite(loss)):
            return True
        self._nonfinite("loss", loss)
        return False

    def _nonfinite(self, what: str, value: float) -> None:
        """Stop (raise :class:`Diverged`) or count a skipped step, as ``on_nonfinite`` says."""
        if not self.weights_finite():
            self._diverged(f"{what} is {value} and the weights are no longer finite", value)
        if self.cfg.on_nonfinite == "stop":
            self._diverged(f"{what} is {value}", value)
        p = self.progress
        p.skipped += 1
        log.warning("epoch %d, batch %d/%d (step %d): %s is %s; step skipped "
                    "(train.on_nonfinite=skip, %d so far)", p.epoch + 1, p.batch + 1,
                    self._batches, p.step + 1, what, value, p.skipped)

    def _diverged(self, what: str, value: float) -> None:
        p = self.progress
        raise Diverged(what, value, p.epoch + 1, p.batch + 1, self._batches, p.step + 1)

    def _epoch_metric(self) -> Metric:
        """A fresh train metric, holding the epoch's saved sums when resuming mid-epoch."""
        metric, p = self.task.new_metric(), self.progress
        if p.batch and p.metric_state is not None:
            metric.load_state(p.metric_state)
        elif p.batch and self.world.is_main:
            log.warning("the task's train metric has no state(); this epoch's train %s covers "
                        "only the batches after the resume", self.task.metric)
        return metric

    def _mid_epoch_progress(self, metric: Metric) -> dict[str, Any]:
        """:class:`Progress` with the epoch's sums over every replica (what rank 0 saves)."""
        p = self.progress
        loss_sum, loss_count = distributed.all_reduce_sum([p.loss_sum, p.loss_count])
        state = metric.state()
        if state is not None and self.world.distributed:
            merged = self.task.new_metric()
            merged.load_state([t.clone() for t in state])
            distributed.all_reduce_metric(merged)
            state = merged.state()
        return {**asdict(p), "loss_sum": loss_sum, "loss_count": int(loss_count),
                "metric_state": state}

    def _end_epoch(self, metric: Metric) -> bool:
        """Close the epoch: its history record (with the periodic evaluation, if due); whether
        that evaluation is a new best (``train.keep_best``)."""
        p = self.progress
        loss_sum, n_losses = distributed.all_reduce_sum([p.loss_sum, p.loss_count])
        distributed.all_reduce_metric(metric)  # the train metric of the global batches
        record: dict[str, Any] = {
            "epoch": p.epoch + 1,
            "step": p.step,
            "lr": self.weight.optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / n_losses if n_losses else None,
            f"train_{self.task.metric}": metric.compute().get(self.task.metric),
            "train_time_s": p.train_time,
        }
        if self.cfg.on_nonfinite == "skip":
            record["skipped_steps"] = p.skipped
        if self.events is not None:
            self.events.epoch_ended(p.step, p.epoch + 1,
                                    {k: v for k, v in record.items() if k not in ("epoch", "step")})
        every, improved = self.cfg.eval_every, None
        if every and ((p.epoch + 1) % every == 0 or p.step >= self.total_steps):
            n = len(self.eval_set)
            if self._eval_examples is not None:
                n = min(n, self._eval_examples)
            record.update(periodic_evaluation(self.task, self.model, self.eval_batches, n,
                                              self.eval_attack))
            if self.events is not None:
                self._send_periodic(record, n)
            if self.cfg.keep_best is not None:
                improved = select(p.best, record, self.cfg.keep_best, self.task, p.epoch + 1,
                                  p.step)
                p.best = improved or p.best
        p.history.append(record)
        p.epoch += 1
        p.batch = 0
        p.loss_sum, p.loss_count, p.metric_state = 0.0, 0, None
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                          f"{k}={v['label']}" if isinstance(v, dict) else f"{k}={v}"
                          for k, v in record.items())
        log.info("epoch %d/%d: %s", p.epoch, self.epochs, shown)
        if improved:
            log.info("new best %s %s %.4g at epoch %d (train.keep_best): writing %s",
                     self.cfg.keep_best, self.task.metric, improved["value"], p.epoch,
                     BEST_CHECKPOINT)
        return improved is not None

    def _send_periodic(self, record: dict[str, Any], n: int) -> None:
        """The periodic evaluation in ``record`` as :class:`samat.EvalResult` events."""
        p, key = self.progress, self.task.metric
        passes = [("natural", record[f"eval_{key}"])]
        if self.eval_attack is not None:
            passes.append((self.eval_attack[0], record[f"eval_robust_{key}"]))
        for label, value in passes:
            self.events.eval_result(label, {key: value}, final=False, step=p.step,
                                    epoch=p.epoch + 1, n_examples=n)

    @property
    def _eval_examples(self) -> int | None:
        """How many evaluation examples the periodic evaluation uses (None: all)."""
        return (self.cfg.eval_examples if self.cfg.eval_examples is not None
                else self.recipe.eval.n_examples)

    def eval_batches(self, rank: int = 0, world_size: int = 1) -> Any:
        """Rank ``rank``'s share of the periodic evaluation's examples (the first
        ``train.eval_examples``, else ``eval.n_examples``), on device."""
        loader = eval_loader(self.task, self.eval_set, self.recipe.eval.batch_size,
                             self._eval_examples, rank=rank, world_size=world_size)
        return device_batches(loader, self.device, self.cfg.channels_last)

    def use_checkpoint(self, run_dir: Path) -> dict[str, Any]:
        """Put the weights ``eval.checkpoint`` names into :attr:`model` (``best``: those of
        ``run_dir``'s ``best.pt``; ``last``: the trained ones, already there) and return what
        ``metrics.json`` records of them: name, path, epoch, step and, for ``best``, how it was
        selected. Every rank calls it after :meth:`fit`."""
        p = self.progress
        if self.recipe.eval.checkpoint == "best":
            load_weights(self.model, run_dir / BEST_CHECKPOINT, p.best, self.device)
            return {"name": "best", "path": str(BEST_CHECKPOINT), **(p.best or {})}
        return {"name": "last", "path": str(CHECKPOINT), "epoch": p.epoch, "step": p.step}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _bad_checkpoint(path: Path, why: str) -> SamatError:
    return SamatError(f"--resume: checkpoint {path} is {why}; delete it to restart the run from "
                      "scratch, or restore an intact copy")


def _bn_statistics(model: nn.Module) -> list[Tensor]:
    """The running statistics of every BatchNorm layer of ``model`` that tracks them."""
    return [t for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats
            for t in (m.running_mean, m.running_var, m.num_batches_tracked) if t is not None]


def _cpu_torch_rng(rng: dict[str, Any]) -> dict[str, Any]:
    return {**rng, "torch": rng["torch"].cpu()}


def _progress(data: dict[str, Any]) -> Progress:
    progress = Progress(**data)
    if not all(isinstance(getattr(progress, k), int) and getattr(progress, k) >= 0
               for k in ("epoch", "batch", "step", "loss_count", "skipped")):
        raise ValueError("negative or non-integer position")
    return progress
