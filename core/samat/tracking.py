"""A run's events: to every plugin's ``samat_on_*`` hooks, to the recipe's loggers and to
``metrics.csv``.

:class:`RunEvents` is used on rank 0 as a context manager around a run (or ``samat eval``): on
entry it registers the loggers (built by :func:`samat.factories.create_loggers`) as plugins and
sends :class:`~samat.events.RunStarted`; the trainer and the evaluation send the rest; on exit it
sends :class:`~samat.events.RunEnded` with the status the exception (if any) says, and
unregisters the loggers. A hook that raises is logged once per plugin and hook, never fatal.

``metrics.csv`` always holds every step, epoch and evaluation event: columns ``step``,
``epoch``, ``event`` (step, epoch, eval, final) and the :func:`~samat.events.scalars` tag names
(a new tag rewrites the file with the wider header). A resumed run first drops the rows after
its checkpoint's step, those of an unfinished final evaluation and a line torn by a kill, so no
row is repeated.
"""

from __future__ import annotations

import csv
import io
import logging
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from samat.atomic import write_text
from samat.errors import DIVERGED_EXIT, STOPPED_EXIT
from samat.events import (
    EpochEnded,
    EvalResult,
    Event,
    RunEnded,
    RunStarted,
    StepLogged,
    numbers,
    scalars,
)
from samat.plugins import _describe_error, plugin_manager
from samat.results import METRICS_CSV

log = logging.getLogger("samat")

HOOKS = {RunStarted: "samat_on_run_started", StepLogged: "samat_on_step_logged",
         EpochEnded: "samat_on_epoch_ended", EvalResult: "samat_on_eval_result",
         RunEnded: "samat_on_run_ended"}
"""Which hook each event goes to."""
FIXED_COLUMNS = ["step", "epoch", "event"]


class RunEvents:
    """Sends one run's events (see the module docstring); ``resumed_at`` is the step of the
    checkpoint a resumed run continues from (None for a new run)."""

    def __init__(self, run_dir: Path, loggers: list[tuple[str, Any]], config: Mapping[str, Any],
                 *, kind: str = "run", step: int = 0, epoch: int = 0, total_steps: int = 0,
                 resumed_at: int | None = None) -> None:
        self.run_dir, self.loggers, self.config, self.kind = run_dir, loggers, config, kind
        self.step, self.epoch, self.total_steps = step, epoch, total_steps
        self.resumed_at = resumed_at
        self.metrics: Mapping[str, Any] = {}
        """The ``metrics.json`` content, for :class:`RunEnded` (set by the run)."""
        self._names: list[str] = []
        self._warned: set[tuple[str, str]] = set()
        self._csv = MetricsCsv(run_dir / METRICS_CSV)

    def __enter__(self) -> RunEvents:
        self._csv.open(self.resumed_at)
        pm = plugin_manager()
        for i, (name, logger) in enumerate(self.loggers):
            self._names.append(f"logging.{i}:{name}@{id(self):x}")
            pm.register(logger, name=self._names[-1])
        self.emit(RunStarted(str(self.run_dir), self.config, self.step, self.epoch,
                             self.total_steps, self.resumed_at is not None, self.kind))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        code = getattr(exc, "exit_code", None)
        status = ("finished" if exc is None else "diverged" if code == DIVERGED_EXIT else
                  "stopped" if code == STOPPED_EXIT or isinstance(exc, KeyboardInterrupt)
                  else "failed")
        try:
            self.emit(RunEnded(str(self.run_dir), self.step, self.epoch, status, self.metrics))
        finally:
            pm = plugin_manager()
            for name in self._names:
                if pm.get_plugin(name) is not None:
                    pm.unregister(name=name)

    def step_logged(self, step: int, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Training progress at ``step`` of ``epoch`` (1-based)."""
        self.emit(StepLogged(str(self.run_dir), step, epoch, numbers(metrics)))

    def epoch_ended(self, step: int, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Epoch ``epoch`` (1-based) ended at ``step``."""
        self.emit(EpochEnded(str(self.run_dir), step, epoch, numbers(metrics)))

    def eval_result(self, label: str, metrics: Mapping[str, Any], *, final: bool,
                    step: int | None = None, epoch: int | None = None,
                    n_examples: int | None = None) -> None:
        """One evaluation pass (``natural`` or an attack's label); the final evaluation takes
        the run's last step and epoch."""
        values = {k: v for k, v in numbers(metrics).items()
                  if k not in ("seconds", "n_examples")}
        self.emit(EvalResult(str(self.run_dir), self.step if step is None else step,
                             self.epoch if epoch is None else epoch, label, values, final,
                             n_examples))

    def emit(self, event: Event) -> None:
        """Send ``event`` to every hook implementation (and ``metrics.csv``)."""
        if not isinstance(event, RunStarted | RunEnded):
            self.step, self.epoch = event.step, event.epoch
            kind = ("step" if isinstance(event, StepLogged) else "epoch"
                    if isinstance(event, EpochEnded) else "final" if event.final else "eval")
            self._csv.append(event.step, event.epoch, kind, scalars(event))
        hook = HOOKS[type(event)]
        for impl in getattr(plugin_manager().hook, hook).get_hookimpls():
            try:
                impl.function(event=event)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a logger must not end (or sys.exit) a run
                if (impl.plugin_name, hook) not in self._warned:
                    self._warned.add((impl.plugin_name, hook))
                    log.warning("plugin '%s': %s failed (further failures not shown): %s",
                                impl.plugin_name.split("@")[0], hook, _describe_error(exc))


class MetricsCsv:
    """``metrics.csv``: appended a row at a time; rewritten when a new column appears."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = list(FIXED_COLUMNS)

    def open(self, resumed_at: int | None) -> None:
        """Start the file, or (``resumed_at``: a checkpoint's step) keep its rows up to that
        step, without final-evaluation rows."""
        rows: list[dict[str, str]] = []
        if resumed_at is not None and self.path.is_file():
            text = self.path.read_text(encoding="utf-8")
            reader = csv.DictReader(io.StringIO(text[:text.rfind("\n") + 1]))  # no torn line
            self.columns = list(reader.fieldnames or FIXED_COLUMNS)
            rows = [r for r in reader if _int(r.get("step")) <= resumed_at
                    and r.get("event") != "final"]
        self._rewrite(rows)

    def append(self, step: int, epoch: int, event: str, values: dict[str, float]) -> None:
        row = {"step": step, "epoch": epoch, "event": event, **values}
        new = [k for k in values if k not in self.columns]
        if new:
            with self.path.open(newline="", encoding="utf-8") as stream:
                rows = list(csv.DictReader(stream))
            self.columns += new
            self._rewrite([*rows, row])
            return
        with self.path.open("a", newline="", encoding="utf-8") as stream:
            csv.DictWriter(stream, self.columns).writerow(row)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, text.getvalue())


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
