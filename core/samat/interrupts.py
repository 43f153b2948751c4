"""Graceful stops: a signal (a cluster's preemption or time-limit warning) asks the trainer to
checkpoint at the next step boundary and stop, instead of dying mid-step.

:func:`stop_on` installs the handlers for a block; the trainer polls :func:`stop_requested`
after every step and, when it is set, saves a checkpoint and raises
:class:`samat.train.Stopped`. A resumed run then ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

_requested: list[str] = []


def request_stop(reason: str) -> None:
    """Ask the running trainer to checkpoint and stop at its next step boundary."""
    if not _requested:
        _requested.append(reason)


def stop_requested() -> str | None:
    """The reason a stop was requested (the first one), or None."""
    return _requested[0] if _requested else None


def clear() -> None:
    """Forget a stop request (a new run in the same process starts clean)."""
    _requested.clear()


@contextmanager
def stop_on(reasons: Mapping[signal.Signals, str]) -> Iterator[None]:
    """Within the block, each signal in ``reasons`` requests a stop with its reason (e.g.
    ``{SIGUSR2: "time limit", SIGTERM: "preempted"}``); the previous handlers come back after.
    Must be called from the main thread."""

    def handler(signum: int, frame: FrameType | None) -> None:
        request_stop(reasons[signal.Signals(signum)])

    previous = {sig: signal.signal(sig, handler) for sig in reasons}
    clear()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
