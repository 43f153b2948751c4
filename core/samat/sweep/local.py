"""The ``local`` launcher: points run on this machine, one at a time in this process or ``jobs``
at a time as ``samat sweep ROOT --point K`` children that die with the sweep.

With GPUs, every child gets its own ``CUDA_VISIBLE_DEVICES`` — ``gpus_per_job`` devices of
``gpus`` (default: the visible CUDA devices), handed out as devices free up — and no more jobs
run at once than there are device groups, unless ``oversubscribe`` (then groups are shared
round-robin). Points that other processes are training are waited for, and taken over if those
processes die.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samat import lifeline, results
from samat.errors import DIVERGED_EXIT, SamatError
from samat.locking import RunLock
from samat.sweep.grid import Sweep
from samat.sweep.launcher import Launcher
from samat.sweep.point import SKIPPED, run_point

log = logging.getLogger("samat")


@dataclass
class LocalOptions:
    """``sweep.launcher`` parameters of the local launcher."""

    jobs: int = 1  # points at once; above 1 each runs in its own process
    gpus: list[Any] | None = None  # CUDA device ids or UUIDs (default: the visible ones)
    gpus_per_job: int | None = None  # devices per job (default 1 when there are GPUs, else 0)
    oversubscribe: bool = False  # allow more concurrent jobs than device groups


class LocalLauncher(Launcher):
    """Points on this machine (see the module docstring)."""

    name = "local"
    Options = LocalOptions

    @classmethod
    def check(cls, options: LocalOptions) -> None:
        if options.jobs < 1:
            raise SamatError(f"--jobs / sweep.launcher.jobs: must be >= 1, got {options.jobs}")
        if options.gpus is not None and not all(
                isinstance(g, int | str) and not isinstance(g, bool) for g in options.gpus):
            raise SamatError("sweep.launcher.gpus: expected a list of CUDA device ids such as "
                             f"[0, 1], got {options.gpus!r}")
        if options.gpus_per_job is not None and options.gpus_per_job < 0:
            raise SamatError("sweep.launcher.gpus_per_job: must be >= 0, got "
                             f"{options.gpus_per_job}")

    def device_groups(self) -> list[str | None]:
        """The ``CUDA_VISIBLE_DEVICES`` of each concurrent job slot (None: not pinned)."""
        o = self.options
        gpus = [str(g) for g in o.gpus] if o.gpus is not None else visible_gpus()
        per_job = o.gpus_per_job if o.gpus_per_job is not None else (1 if gpus else 0)
        if per_job == 0 or not gpus:
            return [None] * o.jobs
        if per_job > len(gpus):
            raise SamatError(f"sweep.launcher.gpus_per_job: {per_job} but only {len(gpus)} "
                             f"GPU(s) ({', '.join(gpus)}); lower it or list more gpus")
        groups = [",".join(gpus[i:i + per_job]) for i in range(0, len(gpus) - per_job + 1,
                                                               per_job)]
        if o.oversubscribe:
            return [groups[i % len(groups)] for i in range(o.jobs)]
        if o.jobs > len(groups):
            log.info("%d job(s) asked, %d GPU group(s) of %d: running %d at once "
                     "(sweep.launcher.oversubscribe=true to share GPUs)", o.jobs, len(groups),
                     per_job, len(groups))
        return groups[:o.jobs]

    def plan(self, todo: list[int]) -> list[str]:
        slots = self.device_groups()
        where = ("in this process" if len(slots) == 1 and slots[0] is None
                 else f"{len(slots)} at once in child processes")
        pinned = [s for s in slots if s is not None]
        gpus = f", CUDA_VISIBLE_DEVICES {' | '.join(pinned)}" if pinned else ""
        return [f"launcher local: {len(todo)} point(s) to run, {where}{gpus}"]

    def launch(self, todo: list[int]) -> None:
        queue = _Queue(self.sweep, self.root, todo)
        slots = self.device_groups()
        if len(slots) == 1 and slots[0] is None:
            _work(queue, lambda index, lock: run_point(
                self.sweep, self.root, index, lock=lock, job={"launcher": "local"}))
        else:
            env = {**os.environ, **lifeline.child_env()}
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // len(slots))))
            with ThreadPoolExecutor(len(slots)) as pool:
                futures = [pool.submit(_work, queue, lambda index, lock, devices=devices: _child(
                    self.sweep, self.root, index, lock, env, devices)) for devices in slots]
                for future in futures:
                    future.result()
        self.failed = queue.failed


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every
    device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class _Queue:
    """Hands out the points still to run, each locked; waits for points that other processes
    are training and takes them over if those processes die."""

    POLL_S = 2.0

    def __init__(self, sweep: Sweep, root: Path, todo: list[int]) -> None:
        self.sweep, self.root = sweep, root
        self.waiting = list(todo)
        self.failed: list[tuple[str, str]] = []
        self._mutex = threading.Lock()
        self._told = False

    def next(self) -> tuple[int, RunLock] | None:
        """The next point to run with its lock held, or None when none is left."""
        while True:
            with self._mutex:
                item, busy = self._scan()
            if item is not None or not busy:
                return item
            if not self._told:
                log.info("waiting for %d point(s) running in other processes: %s", len(busy),
                         ", ".join(busy))
                self._told = True
            time.sleep(self.POLL_S)

    def _scan(self) -> tuple[tuple[int, RunLock] | None, list[str]]:
        busy = []
        for index in list(self.waiting):
            point = self.sweep.points[index]
            status = point.status(self.root)
            if status in SKIPPED:
                self.waiting.remove(index)
                log.info("[%d/%d] %s: %s, skipped", index + 1, len(self.sweep.points),
                         point.name, "finished" if status == "done" else "diverged")
                continue
            path = self.root / point.name
            results.make_dirs(path, "--output")
            lock = RunLock(path)
            if not lock.acquire():
                busy.append(point.name)
                continue
            self.waiting.remove(index)
            return (index, lock), busy
        return None, busy

    def done(self, index: int, outcome: str) -> None:
        if outcome in ("failed", "stopped"):
            name = self.sweep.points[index].name
            error = f"{outcome}: see {self.root / name / 'point.json'}"
            with self._mutex:
                self.failed.append((name, error))


def _work(queue: _Queue, run_one: Callable[[int, RunLock], str]) -> None:
    """Run points from ``queue`` until none is left."""
    while (item := queue.next()) is not None:
        index, lock = item
        outcome = "failed"
        try:
            outcome = run_one(index, lock)
        finally:
            lock.release()
            queue.done(index, outcome)


def _child(sweep: Sweep, root: Path, index: int, lock: RunLock, env: dict[str, str],
           devices: str | None) -> str:
    """``samat sweep ROOT --point K`` in a child that inherits the point's lock and dies with
    this process; its output goes to the point's ``sweep_output.txt``."""
    point = sweep.points[index]
    out_dir = root / point.name
    child_env = {**env, **lock.child_env(), "SAMAT_LAUNCHER": "local"}
    if devices is not None:
        child_env["CUDA_VISIBLE_DEVICES"] = devices
    cmd = [sys.executable, "-m", "samat", "sweep", str(root), "--point", str(index)]
    with open(out_dir / "sweep_output.txt", "w") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env).returncode
    outcome = {0: "done", DIVERGED_EXIT: "diverged"}.get(code, "failed")
    tag = f"[{index + 1}/{len(sweep.points)}] {point.name}"
    if outcome == "failed":
        log.error("%s: failed (exit %d; output in %s)", tag, code, out_dir / "sweep_output.txt")
    else:
        log.info("%s: %s", tag, "finished" if outcome == "done" else "diverged")
    return outcome
