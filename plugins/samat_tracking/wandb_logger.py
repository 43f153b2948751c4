"""Weights & Biases: a run with the recipe as config, every event's scalars, the final results
in its summary. Offline (files under ``<run_dir>/wandb``, ``wandb sync`` uploads them) unless
``mode`` or ``WANDB_MODE`` says otherwise."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from samat import (
    EpochEnded,
    EvalResult,
    RunEnded,
    RunStarted,
    StepLogged,
    check_choice,
    event_scalars,
    hookimpl,
    write_text,
)
from samat_tracking.common import ScalarLogger, log, require

MODES = ("offline", "online", "disabled")
ID_FILE = "samat-wandb-id"
"""In ``<run_dir>/wandb``: the W&B run id, so that ``--resume`` continues the same W&B run."""


class WandbLogger(ScalarLogger):
    """Weights & Biases run (``project``, ``entity``, ``name``, ``group``, ``tags``, ``mode``:
    offline unless set here or by ``WANDB_MODE``)."""

    def __init__(self, project: str = "samat", entity: str | None = None,
                 name: str | None = None, group: str | None = None,
                 tags: list[str] | None = None, mode: str | None = None) -> None:
        require("wandb", "wandb")
        if tags is not None and not (isinstance(tags, list)
                                     and all(isinstance(t, str) for t in tags)):
            raise ValueError(f"tags must be a list of strings, got {tags!r}")
        self.mode = check_choice("mode", mode or os.environ.get("WANDB_MODE") or "offline",
                                 MODES)
        self.options = {"project": project, "entity": entity, "name": name, "group": group,
                        "tags": tags}
        self.run: Any = None
        self.hooks: tuple[Any, Any] = (sys.exit, sys.excepthook)

    @hookimpl
    def samat_on_run_started(self, event: RunStarted) -> None:
        import wandb

        directory = Path(event.run_dir) / "wandb"
        directory.mkdir(parents=True, exist_ok=True)
        id_file = directory / ID_FILE
        run_id = id_file.read_text().strip() if event.resumed and id_file.is_file() else None
        if run_id is None:
            run_id = uuid.uuid4().hex[:12]
            write_text(id_file, run_id)
        self.hooks = (sys.exit, sys.excepthook)  # wandb.init replaces both, finish keeps them
        settings = wandb.Settings(silent=True, console="off", disable_git=True,
                                  save_code=False, x_disable_stats=True)
        self.run = wandb.init(
            dir=str(event.run_dir), mode=self.mode, config=dict(event.config), id=run_id,
            resume="allow" if self.mode == "online" else None, settings=settings,
            **{k: v for k, v in self.options.items() if v is not None})
        where = Path(self.run.dir).parent if self.mode == "offline" else self.run.url
        hint = f" (upload: wandb sync {where})" if self.mode == "offline" else ""
        log.info("wandb: %s run in %s%s", self.mode, where, hint)

    def log_scalars(self, event: StepLogged | EpochEnded | EvalResult) -> None:
        self.run.log({**event_scalars(event), "epoch": event.epoch}, step=event.step)

    @hookimpl
    def samat_on_run_ended(self, event: RunEnded) -> None:
        if self.run is not None:
            self.run.summary["status"] = event.status
            self.run.finish(exit_code=0 if event.status == "finished" else 1)
            self.run = None
            sys.exit, sys.excepthook = self.hooks
