"""What runs in a ``ray`` launcher's task (see :mod:`samat.sweep.ray_launcher`): one point, its
log in the point's ``sweep_output.txt``, its lock taken over from a lost attempt of the same task,
and ``ray.cancel`` turned into a stop at the next step."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from samat import interrupts, results
from samat.errors import SamatError
from samat.locking import Holder, RunLock, holder_gone
from samat.sweep.grid import MANIFEST, point_index, read_record, sweep_from_manifest
from samat.sweep.point import SKIPPED, run_point

log = logging.getLogger("samat")

OUTPUT = "sweep_output.txt"
"""A point's log of its Ray tasks (appended per attempt), as the local launcher's children."""


def run_task(root: str, index: int) -> str:
    """One Ray task: train point ``index`` of the sweep in ``root`` (see the module docstring);
    returns :func:`run_point`'s outcome or ``running elsewhere``."""
    import ray

    context = ray.get_runtime_context()
    task_id = context.get_task_id() or ""
    base = Path(root)
    if not (base / MANIFEST).is_file():
        raise SamatError(f"{base / MANIFEST} is not visible on {socket.gethostname()}: a Ray "
                         "sweep's directory must be on storage every node mounts at that path")
    sweep = sweep_from_manifest(base)
    point = sweep.points[point_index(sweep, index)]
    path = base / point.name
    tag = f"[{index + 1}/{len(sweep.points)}] {point.name}"
    results.make_dirs(path, "--output")
    handler = logging.FileHandler(path / OUTPUT)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("samat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        previous = read_record(path)
        attempt = 1 + (int(previous.get("ray_attempt") or 0)
                       if previous.get("job_id") == task_id else 0)
        log.info("%s: Ray task %s, attempt %d, node %s, %s pid %d", tag, task_id, attempt,
                 context.get_node_id(), socket.gethostname(), os.getpid())
        status = point.status(base)
        if status in SKIPPED:
            log.info("%s: %s, skipped", tag, "finished" if status == "done" else "diverged")
            return status
        lock = RunLock(path)
        if not take_lock(lock, path, task_id, tag):
            holder = lock.holder()
            log.info("%s: being trained by %s; left to it", tag,
                     holder.describe() if holder else "another process")
            return "running elsewhere"
        job = {"launcher": "ray", "job_id": task_id, "ray_attempt": attempt,
               "ray_node_id": context.get_node_id(), "ray_job_id": context.get_job_id()}
        try:
            with _stop_on_cancel():
                return run_point(sweep, base, index, lock=lock, job=job)
        finally:
            lock.release()
    finally:
        logger.removeHandler(handler)
        handler.close()





def _stop_on_cancel() -> contextlib.AbstractContextManager[None]:
    """``ray.cancel`` interrupts a running task's main thread as SIGINT would: make that a stop
    request, so that training checkpoints at its next step and the point is recorded
    ``stopped`` (instead of an exception at any point, e.g. within a checkpoint write)."""
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return interrupts.stop_on({signal.SIGINT: "the Ray task was cancelled"})


def take_lock(lock: RunLock, path: Path, task_id: str, tag: str) -> bool:
    """Take the point's lock. While its holder is gone — a dead process of this host, or an
    earlier attempt of this very task (Ray retries a task only once the worker or node that ran
    it is lost; on another node its pid cannot be checked) — wait for the lock to go stale and
    take it over. False if a live holder keeps it (also an "earlier attempt" whose heartbeat
    goes on past the stale time: its node was not lost after all)."""
    deadline = None
    while not lock.acquire():
        holder = lock.holder()
        if holder is None:
            continue  # released between the two looks
        if not (holder_gone(holder) or _earlier_attempt(path, holder, task_id)):
            return False
        now = time.monotonic()
        if deadline is None:
            deadline = now + lock.stale_after_s + 2 * lock.heartbeat_s
            log.info("%s: its lost attempt (%s) held it; waiting up to %.0f s for its lock to "
                     "expire", tag, holder.describe(), deadline - now)
        elif now >= deadline:
            return False
        time.sleep(min(1.0, lock.heartbeat_s))
    return True


def _earlier_attempt(path: Path, holder: Holder, task_id: str) -> bool:
    """Whether ``holder`` is an earlier attempt of Ray task ``task_id`` (per the point's
    launch record)."""
    record = read_record(path)
    return (bool(task_id) and record.get("launcher") == "ray"
            and record.get("job_id") == task_id and record.get("pid") == holder.pid
            and record.get("host") == holder.host)
