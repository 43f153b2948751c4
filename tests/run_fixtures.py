"""Comparing runs: metrics.json / history.jsonl without the fields that differ between two
otherwise identical runs (wall clock, the run directory's path)."""

from __future__ import annotations

WALL_CLOCK = {"train_time_s", "mean_step_time_s", "finished_at", "seconds", "run_dir"}
"""Keys whose values depend on when and where a run ran, not on what it computed."""


def without_wall_clock(data: object) -> object:
    """``data`` (parsed JSON) without the :data:`WALL_CLOCK` keys, at any depth."""
    if isinstance(data, dict):
        return {k: without_wall_clock(v) for k, v in data.items() if k not in WALL_CLOCK}
    if isinstance(data, list):
        return [without_wall_clock(v) for v in data]
    return data


def kill_on_attack_call(n: int) -> str:
    """Python to run before ``samat.cli.main`` in a subprocess: the process SIGKILLs itself
    on the ``n``-th call of any attack (``ModelAttack.__call__``, one call per batch)."""
    return f"""
import os, signal
from samat.perturb import ModelAttack
original = ModelAttack.__call__
count = [0]
def attack(self, x, y):
    count[0] += 1
    if count[0] == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, x, y)
ModelAttack.__call__ = attack
"""
