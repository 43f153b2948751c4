"""One point of a sweep, whoever runs it: a local sweep, ``samat sweep --point K`` in a user's
array script, a Slurm array element or a Ray task.

The point is trained under its run directory's lock (:mod:`samat.locking`), so it is trained
exactly once however many launchers share the output directory: a finished or diverged point
is skipped, an interrupted one resumed from its checkpoint, one held by a live process left to
it. Every attempt is written down in the point's launch record (``point.json``: state, host,
pid, launcher and job id, error), which ``samat sweep --status`` reads.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from samat import results
from samat.errors import SamatError
from samat.locking import LOCK_NAME, RunLock, acquire_unless_alive
from samat.runner import run
from samat.sweep.grid import POINT_RECORD, Sweep, point_index, point_recipe, write_record
from samat.train import Diverged, Stopped

log = logging.getLogger("samat")

SKIPPED = ("done", "diverged")
"""Point states that need no more work."""


def run_point(sweep: Sweep, root: Path, index: int, *, lock: RunLock | None = None,
              job: dict[str, Any] | None = None) -> str:
    """Train point ``index`` (0-based) of ``sweep`` in ``root``; returns what became of it:
    ``done``, ``diverged``, ``failed``, ``stopped`` (checkpointed on a stop request: resume
    it) or ``running elsewhere`` (a live process holds it).

    ``lock`` is the point's lock when the caller holds it already; ``job`` (launcher, job id,
    ...) goes into the launch record. A failure is recorded there and returned, not raised.
    """
    point = sweep.points[point_index(sweep, index)]
    tag = f"[{index + 1}/{len(sweep.points)}] {point.name}"
    status = point.status(root, ours=lock is not None)
    if status in SKIPPED:
        log.info("%s: %s, skipped", tag, "finished" if status == "done" else "diverged")
        return status
    path = root / point.name
    results.make_dirs(path, "--output")
    own = lock or RunLock(path)
    if lock is None and not acquire_unless_alive(own, lambda holder: log.info(
            "%s: its last process (%s) is gone; waiting for its lock to expire", tag,
            holder.describe())):
        holder = own.holder()
        log.info("%s: being trained by %s; left to it", tag,
                 holder.describe() if holder else "another process")
        return "running elsewhere"
    try:
        return _attempt(sweep, root, point, own, tag, job or {})
    finally:
        if lock is None:
            own.release()


def _attempt(sweep: Sweep, root: Path, point: Any, lock: RunLock, tag: str,
             job: dict[str, Any]) -> str:
    """Run the locked point once and record how it went."""
    path = root / point.name
    status = point.status(root, ours=True)  # again: nobody else can change it now
    if status in SKIPPED:
        return status
    if status == "stale":  # stopped before its first checkpoint: nothing to keep
        clear(path)
    write_record(path, state="running", host=socket.gethostname(), pid=os.getpid(),
                 started=time.time(), ended=None, error=None,
                 cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), **job)
    log.info("%s: %s", tag, "resuming" if status == "partial" else "starting")
    try:
        run(sweep.recipe_path, resume=status == "partial",
            recipe=point_recipe(sweep, point, root), lock=lock)
    except Diverged as exc:
        log.warning("%s: %s", tag, exc)
        outcome, error = "diverged", str(exc)
    except Stopped as exc:
        log.warning("%s: %s", tag, exc)
        outcome, error = "stopped", str(exc)
    except SamatError as exc:
        log.error("%s: failed: %s", tag, exc)
        outcome, error = "failed", str(exc)
    except Exception as exc:
        write_record(path, state="failed", ended=time.time(),
                     error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        log.info("%s: finished", tag)
        outcome, error = "done", None
    write_record(path, state=outcome, ended=time.time(), error=error)
    return outcome


def clear(path: Path) -> None:
    """Remove everything in a point directory but its lock and launch record."""
    for child in path.iterdir():
        if child.name in (LOCK_NAME, POINT_RECORD):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
