"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class SamatError(Exception):
    """A problem with the user's input (recipe, path, name, data) that they can fix."""


class UnknownNameError(SamatError, KeyError):
    """A name that no registry holds."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingDataError(SamatError):
    """Data, weights or another resource that is not where the recipe says."""
