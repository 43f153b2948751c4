"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations

USAGE_EXIT = 2
"""Exit code of every user error (bad recipe, path, name, data)."""
DIVERGED_EXIT = 3
"""Exit code of a run that stopped on a non-finite value (``metrics.json`` status diverged)."""
STOPPED_EXIT = 4
"""Exit code of a run that checkpointed and stopped when asked to (preemption, time limit)."""


class SamatError(Exception):
    """A problem with the user's input (recipe, path, name, data) that they can fix; the CLI
    prints it on one line and exits with :attr:`exit_code`."""

    exit_code = USAGE_EXIT


class UnknownNameError(SamatError, KeyError):
    """A name that no registry holds."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingDataError(SamatError):
    """Data, weights or another resource that is not where the recipe says."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its class name if it has none), for one-line
    errors that quote a library's exception."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__
