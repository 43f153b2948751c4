"""The one trainer: input perturbation, then weight perturbation, every step.

Checkpoints (model, optimizer incl. SAM's base optimizer, scheduler, RNG states, position) are
written every epoch and optionally every ``checkpoint_every`` steps; :meth:`Trainer.fit` resumes
from one and ends exactly where an uninterrupted run would.
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

from samat.data import eval_loader, to_device, train_loader
from samat.errors import SamatError
from samat.interfaces import InputPerturbation, Task, WeightPerturbation
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
    """Fits ``model`` on ``task`` as ``recipe.train`` says."""

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
        self.train_set = task.train_dataset()
        self.eval_set = task.eval_dataset()
        rounding = math.floor if self.cfg.drop_last else math.ceil
        self.steps_per_epoch = rounding(len(self.train_set) / self.cfg.batch_size)
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
        self.progress = Progress()

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write a checkpoint atomically."""
        p = self.progress
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.weight.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
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
        state["rng"]["torch"] = state["rng"]["torch"].cpu()
        set_rng_state(state["rng"])
        self.progress = Progress(**state["progress"])

    # -- training ----------------------------------------------------------------------------
    def fit(self, checkpoint: Path | None = None, history_path: Path | None = None) -> Progress:
        """Train until the budget is spent, checkpointing to ``checkpoint`` if given."""
        p, cfg = self.progress, self.cfg
        loss_fn = self.task.loss
        while p.step < self.total_steps:
            loader = train_loader(self.task, self.train_set, cfg.batch_size, self.recipe.seed,
                                  p.epoch, cfg.num_workers, cfg.drop_last)
            batches = iter(loader)
            if p.batch:  # resuming mid-epoch: replay the data order, keep the saved RNG
                saved = rng_state()
                for _ in range(p.batch):
                    next(batches)
                set_rng_state(saved)
            self.model.train()
            metric = self.task.new_metric()
            losses: list[float] = []
            bar = tqdm(batches, total=len(loader), initial=p.batch, disable=None, leave=False,
                       desc=f"epoch {p.epoch + 1}/{self.epochs}", unit="batch")
            for x, y in bar:
                x, y = to_device(x, self.device), to_device(y, self.device)
                start = time.perf_counter()
                x_in = self.input.perturb(self.model, x, y, loss_fn)
                result = self.weight.step(self.model, loss_fn, x_in, y)
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
            self._end_epoch(losses, metric.compute())
            if history_path is not None:
                from samat.results import write_history

                write_history(history_path, p.history)
            if checkpoint is not None:
                self.save(checkpoint)
        return p

    def _end_epoch(self, losses: list[float], train_metric: dict[str, float]) -> None:
        p = self.progress
        record: dict[str, Any] = {
            "epoch": p.epoch + 1,
            "step": p.step,
            "lr": self.weight.optimizer.param_groups[0]["lr"],
            "train_loss": sum(losses) / max(len(losses), 1),
            f"train_{self.task.metric}": train_metric.get(self.task.metric),
            "train_time_s": p.train_time,
        }
        every = self.cfg.eval_every
        if every and ((p.epoch + 1) % every == 0 or p.step >= self.total_steps):
            batches = eval_loader(self.task, self.eval_set, self.recipe.eval.batch_size,
                                  self.recipe.eval.n_examples)
            natural = self.task.evaluate(
                self.model, ((to_device(x, self.device), to_device(y, self.device))
                             for x, y in batches))
            record[f"eval_{self.task.metric}"] = natural[self.task.metric]
        p.history.append(record)
        p.epoch += 1
        p.batch = 0
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in record.items())
        log.info("epoch %d/%d: %s", p.epoch, self.epochs, shown)
