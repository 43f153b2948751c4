"""``samat sweep``: a grid of ordinary runs, run where the launcher says, resumable, summarised
next to its runs.

- :mod:`samat.sweep.grid` — the points of a recipe's ``sweep:`` block and command-line axes,
  and the manifest (``sweep.json``) that identifies a sweep directory;
- :mod:`samat.sweep.point` — one point, run under its lock by whoever runs it;
- :mod:`samat.sweep.launcher` — where points run: ``local`` (:mod:`samat.sweep.local`),
  ``slurm`` (:mod:`samat.sweep.slurm_launcher`), ``ray`` (:mod:`samat.sweep.ray_launcher`, with
  :mod:`samat.sweep.ray_address` and :mod:`samat.sweep.ray_task`).

Re-running a sweep runs only what is not finished; any number of sweeps and cluster workers on
one output directory train each point exactly once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from samat import atomic, results
from samat.errors import SamatError
from samat.locking import lock_state
from samat.report import build_tables, collect_runs, render
from samat.sweep.grid import (
    MANIFEST,
    Point,
    Sweep,
    check_same_sweep,
    default_root,
    load_sweep,
    manifest,
    point_recipe,
    read_record,
    split_arguments,
    sweep_from_manifest,
    write_manifest,
)
from samat.sweep.launcher import Launcher, make_launcher
from samat.sweep.point import SKIPPED, run_point

log = logging.getLogger("samat")

__all__ = ["MANIFEST", "Launcher", "Point", "Sweep", "default_root", "load_sweep",
           "make_launcher", "manifest", "point_recipe", "point_states", "run_point",
           "run_sweep", "split_arguments", "sweep_from_manifest", "write_summary"]

TERMINAL = ("done", "diverged", "failed")
"""Point states a waiting sweep stops waiting for."""


def run_sweep(sweep: Sweep, root: Path, launcher: Launcher | None = None,
              wait: bool | None = None, poll_s: float = 5.0) -> list[dict[str, Any]]:
    """Run every unfinished point with ``launcher`` (default: the sweep's own, ``local``),
    then — if the launcher blocks or ``wait`` — write the summary and return the manifest's
    point entries; raises :class:`SamatError` naming the points that failed (the others ran).
    A launcher that only submits (Slurm) without ``wait`` returns after submitting."""
    launcher = launcher or make_launcher(sweep, root)
    check_same_sweep(sweep, root)
    results.check_output_dir(root, "--output")
    results.make_dirs(root, "--output")
    write_manifest(sweep, root)
    todo = []
    for index, point in enumerate(sweep.points):
        status = point.status(root)
        if status in SKIPPED:
            log.info("[%d/%d] %s: %s, skipped", index + 1, len(sweep.points), point.name,
                     "finished" if status == "done" else "diverged")
        else:
            todo.append(index)
    try:
        launcher.launch(todo)
        if not launcher.blocking:
            if not wait:
                return manifest(sweep, root)["points"]
            _wait(sweep, root, launcher, todo, poll_s)
    finally:
        write_manifest(sweep, root)
    write_summary(root)
    states = {p.name: p.status(root) for p in sweep.points}
    diverged = [name for name, state in states.items() if state == "diverged"]
    if diverged:
        log.warning("%d point(s) diverged (metrics.json status: diverged): %s", len(diverged),
                    ", ".join(diverged))
    failed = getattr(launcher, "failed", None) or [
        (name, read_record(root / name).get("error") or "see its point.json")
        for name, state in states.items() if state == "failed"]
    if failed:
        name, why = failed[0]
        raise SamatError(f"sweep: {len(failed)} point(s) failed, first {name}: {why}; "
                         "re-run the sweep to retry them")
    return manifest(sweep, root)["points"]


def _wait(sweep: Sweep, root: Path, launcher: Launcher, todo: list[int],
          poll_s: float) -> None:
    """Poll until every launched point is done, diverged or failed (as the run directories
    and the launcher say)."""
    told = None
    while True:
        states = point_states(sweep, root, launcher)
        pending = [i for i in todo if states[i]["state"] not in TERMINAL]
        if not pending:
            return
        summary = ", ".join(f"{n} {s}" for s, n in _count(states, pending).items())
        if summary != told:
            log.info("waiting for %d point(s): %s", len(pending), summary)
            told = summary
        time.sleep(poll_s)


def _count(states: dict[int, dict[str, Any]], indices: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in indices:
        counts[states[i]["state"]] = counts.get(states[i]["state"], 0) + 1
    return counts


def point_states(sweep: Sweep, root: Path, launcher: Launcher | None = None
                 ) -> dict[int, dict[str, Any]]:
    """Each point's state for ``--status``: pending / running (job id, host) / done /
    diverged / failed (error), read from its run directory, its lock, its launch record and
    the launcher."""
    known = launcher.job_states() if launcher is not None else {}
    out: dict[int, dict[str, Any]] = {}
    for index, point in enumerate(sweep.points):
        path = root / point.name
        record = read_record(path)
        state = point.status(root)
        entry: dict[str, Any] = {"index": index, "name": point.name,
                                 "job_id": record.get("job_id"), "host": record.get("host"),
                                 "detail": ""}
        if state == "running":
            holder = lock_state(path)[1]
            if holder is not None and holder.known:
                entry["host"] = holder.host
            entry["detail"] = holder.describe() if holder else ""
        elif state == "failed":
            entry["detail"] = record.get("error") or ""
        elif state in ("partial", "stale", "pending"):
            if record.get("state") == "stopped":
                entry["detail"] = "stopped with a checkpoint; re-run to resume"
            if index in known:
                entry["detail"] = known[index]
            elif record.get("state") == "submitted":
                entry["detail"] = f"submitted to {record.get('launcher')}"
            state = "pending" if state == "stale" else state
        entry["state"] = "pending" if state == "partial" else state
        if state == "partial" and not entry["detail"]:
            entry["detail"] = "interrupted; resumes from its checkpoint"
        out[index] = entry
    return out


def write_summary(root: Path) -> None:
    """``summary.md`` and ``summary.csv`` (the ``samat report`` table of the finished points)."""
    runs = collect_runs([root])
    if not runs:
        return
    tables = build_tables(runs)
    for fmt, name in (("markdown", "summary.md"), ("csv", "summary.csv")):
        atomic.write_text(root / name, render(tables, fmt))
