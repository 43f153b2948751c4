"""A process started by a sweep dies with the sweep, even on SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from samat.lifeline import PARENT_ENV

# A "sweep" that starts a "point" which calls die_with_parent() and then sleeps, then prints
# the point's pid and waits to be killed.
SWEEP = f"""
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import os, time
from samat.lifeline import die_with_parent
die_with_parent()
assert "{PARENT_ENV}" not in os.environ  # not passed on to its own children
open(os.environ["READY"], "w").write(str(os.getpid()))
time.sleep(600)
'''], env={{**os.environ, "{PARENT_ENV}": str(os.getpid())}})
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_children_die_with_their_sweep(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP], env={**os.environ,
                                                                 "READY": str(ready)})
    deadline = time.time() + 60
    while not ready.exists() or not ready.read_text():
        assert time.time() < deadline and sweep.poll() is None
        time.sleep(0.05)
    child = int(ready.read_text())
    assert _alive(child)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the point outlived its sweep"


def test_without_a_sweep_nothing_happens(monkeypatch) -> None:
    from samat.lifeline import die_with_parent

    monkeypatch.delenv(PARENT_ENV, raising=False)
    die_with_parent()  # returns: not started by a sweep
