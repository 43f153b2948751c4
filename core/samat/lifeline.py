"""Processes a sweep starts die with it: no orphan keeps training a point after SIGKILL.

The sweep passes its pid in :data:`PARENT_ENV`; the child calls :func:`die_with_parent` first
thing. On Linux the kernel then sends the child SIGKILL when the sweep's thread that started it
ends (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread polls the parent pid.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PARENT_ENV = "SAMAT_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env() -> dict[str, str]:
    """Environment entries that make a child started now die with this process."""
    return {PARENT_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """If started by a sweep (:data:`PARENT_ENV` set), end this process when the sweep is gone.

    The variable is removed so that this process's own children are not bound to the sweep."""
    value = os.environ.pop(PARENT_ENV, None)
    if not value or not value.isdigit():
        return
    parent = int(value)
    if not _pdeathsig():
        threading.Thread(target=_watch, args=(parent,), daemon=True,
                         name="samat-lifeline").start()
    if os.getppid() != parent:  # the sweep died before we got here
        os._exit(1)


def _pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)
