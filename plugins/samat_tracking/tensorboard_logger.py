"""TensorBoard: every event's scalars, and the recipe as hparams with the final results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samat import (
    EpochEnded,
    EvalResult,
    RunEnded,
    RunStarted,
    StepLogged,
    event_scalars,
    hookimpl,
)
from samat_tracking.common import ScalarLogger, flat_config, log, require


class TensorBoardLogger(ScalarLogger):
    """TensorBoard scalars and hparams (``log_dir``, default ``<run_dir>/tensorboard``)."""

    def __init__(self, log_dir: str | None = None) -> None:
        require("tensorboard", "tensorboard")
        self.log_dir = log_dir
        self.writer: Any = None
        self.config: dict[str, Any] = {}
        self.final: dict[str, float] = {}

    @hookimpl
    def samat_on_run_started(self, event: RunStarted) -> None:
        from torch.utils.tensorboard import SummaryWriter

        directory = (Path(self.log_dir).expanduser() if self.log_dir
                     else Path(event.run_dir) / "tensorboard")
        # a resumed run drops what was logged after its checkpoint (it is logged again)
        self.writer = SummaryWriter(str(directory),
                                    purge_step=event.step + 1 if event.resumed else None)
        self.config = flat_config(event.config)
        log.info("tensorboard: logs in %s (view: tensorboard --logdir %s)", directory, directory)

    def log_scalars(self, event: StepLogged | EpochEnded | EvalResult) -> None:
        for tag, value in event_scalars(event).items():
            self.writer.add_scalar(tag, value, event.step)
        if isinstance(event, EvalResult) and event.final:
            self.final.update(event_scalars(event))

    @hookimpl
    def samat_on_run_ended(self, event: RunEnded) -> None:
        from torch.utils.tensorboard.summary import hparams

        if self.writer is None:
            return
        for summary in hparams({**self.config, "status": event.status}, self.final):
            self.writer.file_writer.add_summary(summary)
        self.writer.close()
