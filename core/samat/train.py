"""The one trainer: input perturbation, then weight perturbation, every step.

Checkpoints (model, optimizer incl. SAM's base optimizer, scheduler, fp16 loss scaler, RNG
states, position) are written every epoch and optionally every ``checkpoint_every`` steps;
:meth:`Trainer.fit` resumes from one and ends exactly where an uninterrupted run would. Under
torchrun the model is wrapped in DistributedDataParallel and each replica trains on its part of
every global batch (docs/distributed.md).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from samat import distributed
from samat.data import batches_per_epoch, device_batches, eval_loader, to_device, train_loader
from samat.errors import SamatError
from samat.interfaces import InputPerturbation, Task, WeightPerturbation
from samat.precision import check_precision, grad_scaler, with_autocast
from samat.recipe import Recipe
from samat.schedules import build_scheduler
from samat.seeding import rng_state, set_rng_state

log = logging.getLogger("samat")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epochs fully completed
    batch: int = 0  # batches done inside the current epoch
    step: int = 0  # optimisation steps done in total
    train_time: float = 0.0  # seconds inside training steps
    history: list[dict[str, Any]] = field(default_factory=list)


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
    ) -> None:
        self.recipe, self.cfg = recipe, recipe.train
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
        self.forward_model, self.step_model = self._training_models()
        self.progress = Progress()

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
    def save(self, path: Path) -> None:
        """Write a checkpoint atomically."""
        p = self.progress
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.weight.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
            "rng": rng_state(),
            "progress": {"epoch": p.epoch, "batch": p.batch, "step": p.step,
                         "train_time": p.train_time, "history": p.history},
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        """Restore everything :meth:`save` wrote (``weights_only=True``)."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.weight.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        state["rng"]["torch"] = state["rng"]["torch"].cpu()
        set_rng_state(state["rng"])
        self.progress = Progress(**state["progress"])

    # -- training ----------------------------------------------------------------------------
    def fit(self, checkpoint: Path | None = None, history_path: Path | None = None) -> Progress:
        """Train until the budget is spent, checkpointing to ``checkpoint`` if given.

        Under torchrun every rank calls it; pass the paths on rank 0 only."""
        p, cfg, w = self.progress, self.cfg, self.world
        loss_fn = self.task.loss
        while p.step < self.total_steps:
            loader = train_loader(self.task, self.train_set, cfg.batch_size, self.recipe.seed,
                                  p.epoch, cfg.num_workers, cfg.drop_last, w.rank, w.size)
            batches = iter(loader)
            if p.batch:  # resuming mid-epoch: replay the data order, keep the saved RNG
                saved = rng_state()
                for _ in range(p.batch):
                    next(batches)
                set_rng_state(saved)
            self.step_model.train()
            metric = self.task.new_metric()
            losses: list[float] = []
            bar = tqdm(batches, total=len(loader), initial=p.batch,
                       disable=None if w.is_main else True, leave=False,
                       desc=f"epoch {p.epoch + 1}/{self.epochs}", unit="batch")
            for x, y in bar:
                x = to_device(x, self.device, cfg.channels_last)
                y = to_device(y, self.device)
                start = time.perf_counter()
                x_in = self.input.perturb(self.forward_model, x, y, loss_fn)
                result = self.weight.step(self.step_model, loss_fn, x_in, y)
                if self.scaler is not None:
                    self.scaler.update()
                self.scheduler.step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                p.train_time += time.perf_counter() - start
                p.step += 1
                p.batch += 1
                losses.append(float(result.loss))
                metric.update(result.output, y)
                if bar.n % 10 == 0 or p.batch == len(loader):
                    bar.set_postfix({
                        "loss": f"{losses[-1]:.4f}",
                        self.task.metric: f"{metric.compute()[self.task.metric]:.2f}",
                        "steps/s": f"{p.step / max(p.train_time, 1e-9):.1f}",
                    })
                if p.step >= self.total_steps:
                    break
                if (checkpoint and cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0
                        and p.batch < len(loader)):
                    self.save(checkpoint)
            bar.close()
            distributed.all_reduce_metric(metric)  # the train metric of the global batches
            self._end_epoch(losses, metric.compute())
            if history_path is not None:
                from samat.results import write_history

                write_history(history_path, p.history)
            if checkpoint is not None:
                self.save(checkpoint)
        return p

    def _end_epoch(self, losses: list[float], train_metric: dict[str, float]) -> None:
        p = self.progress
        loss_sum, n_losses = distributed.all_reduce_sum([sum(losses), len(losses)])
        record: dict[str, Any] = {
            "epoch": p.epoch + 1,
            "step": p.step,
            "lr": self.weight.optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / max(n_losses, 1),
            f"train_{self.task.metric}": train_metric.get(self.task.metric),
            "train_time_s": p.train_time,
        }
        every = self.cfg.eval_every
        if every and ((p.epoch + 1) % every == 0 or p.step >= self.total_steps):
            natural = distributed.evaluate(self.task, self.model, self.eval_batches)
            record[f"eval_{self.task.metric}"] = natural[self.task.metric]
        p.history.append(record)
        p.epoch += 1
        p.batch = 0
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in record.items())
        log.info("epoch %d/%d: %s", p.epoch, self.epochs, shown)

    def eval_batches(self, rank: int = 0, world_size: int = 1) -> Any:
        """Rank ``rank``'s share of the first ``eval.n_examples`` evaluation pairs, on device."""
        e = self.recipe.eval
        loader = eval_loader(self.task, self.eval_set, e.batch_size, e.n_examples,
                             rank=rank, world_size=world_size)
        return device_batches(loader, self.device, self.cfg.channels_last)
