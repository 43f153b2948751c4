"""Restricted unpickling: read pickled *data* without running code from the file.

``pickle.load`` imports and calls whatever a file names (``os.system``, ``builtins.exec``, ...),
so a data file a user points at or downloads can run code. :func:`load` reads a pickle with an
allowlist of the globals (classes and functions, as ``(module, qualified name)`` pairs) the
expected data may reference; any other global is refused before it is imported, with a one-line
:class:`ForbiddenGlobalError`. Plain containers and scalars (``dict``, ``list``, ``tuple``,
``str``, ``bytes``, ``int``, ``float``, ``bool``, ``None``) need no allowlist and always load
(``bytes`` pickled by Python 3 with protocol 0-2 go through ``_codecs.encode``, which is
therefore always allowed: :data:`ALWAYS_ALLOWED`).

Each caller names its own allowlist, as narrow as its files allow::

    from samat.unpickle import load

    NUMPY_ARRAYS = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                    ("numpy", "dtype")}
    batch = load("data_batch_1", NUMPY_ARRAYS, encoding="latin1", what="task.root: data_batch_1")

Python 2 module names (``__builtin__``, ``copy_reg``, ...) are mapped to their Python 3 names
before the check, as ``pickle`` does by default, so allowlists use Python 3 names. Only
allowlist what cannot run code when called with arguments the file chooses (constructors of
data types, numpy's array reconstruction); never ``getattr``, ``eval``, ``exec``, ``__import__``,
a module's ``system``/``open``, or a class whose ``__setstate__`` or constructor does I/O.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import os
import pickle
from collections.abc import Collection
from typing import IO, Any

from samat.errors import SamatError

Global = tuple[str, str]
"""A pickled global as ``(module, qualified name)``, e.g. ``("collections", "defaultdict")``."""

ALWAYS_ALLOWED: frozenset[Global] = frozenset({("_codecs", "encode")})
"""Globals plain data needs: ``_codecs.encode(text, "latin1")`` is how protocols 0-2 store
``bytes`` (codecs only transform data)."""


class UnpickleError(SamatError):
    """A file that cannot be read as the expected pickled data."""


class ForbiddenGlobalError(UnpickleError):
    """The pickle names a global outside the allowlist: not the expected data, maybe malicious.

    ``source`` is how the message names the file, ``refused`` the ``(module, name)`` pair.
    """

    def __init__(self, what: str, refused: Global, hint: str = "") -> None:
        module, name = refused
        super().__init__(
            f"{what}: refused to unpickle '{module}.{name}': the file is not the expected data "
            f"and may be malicious (nothing from it was run){_tail(hint)}"
        )
        self.source, self.refused = what, refused


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose :meth:`find_class` resolves only ``allowed`` globals."""

    def __init__(self, file: IO[bytes], allowed: Collection[Global], *, what: str,
                 hint: str = "", encoding: str = "ASCII", errors: str = "strict") -> None:
        super().__init__(file, encoding=encoding, errors=errors)
        self.allowed = ALWAYS_ALLOWED | frozenset(allowed)
        self.what, self.hint = what, hint

    def find_class(self, module: str, name: str) -> Any:
        """The allowed global ``module.name`` (imported only once allowed), else refuse."""
        key = python3_name(module, name)
        if key not in self.allowed:
            raise ForbiddenGlobalError(self.what, key, self.hint)
        return _resolve(*key)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not data")


def python3_name(module: str, name: str) -> Global:
    """``(module, name)`` with Python 2 names mapped as ``pickle``'s ``fix_imports`` does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _resolve(module: str, name: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def load(source: str | os.PathLike[str] | IO[bytes], allowed: Collection[Global] = (), *,
         encoding: str = "ASCII", errors: str = "strict", what: str | None = None,
         hint: str = "") -> Any:
    """The object pickled in ``source`` (a path or a binary file), refusing every global not in
    ``allowed`` (and :data:`ALWAYS_ALLOWED`).

    ``encoding``/``errors`` decode Python 2 ``str`` as in :func:`pickle.load` (``"latin1"`` for
    numpy arrays written by Python 2). ``what`` names the file in messages (default: its path);
    ``hint`` (what would fix it) ends them. Raises :class:`ForbiddenGlobalError` for a global
    outside ``allowed`` and :class:`UnpickleError` for anything else that stops the read
    (truncated file, not a pickle, wrong arguments to an allowed global); both are one line.
    The result is whatever the file holds: callers check its structure.
    """
    label = what if what is not None else _name(source)
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as stream:
                return _unpickle(stream, allowed, label, hint, encoding, errors)
        return _unpickle(source, allowed, label, hint, encoding, errors)
    except UnpickleError:
        raise
    except OSError as error:
        raise UnpickleError(f"{label}: cannot read ({_one_line(error)}){_tail(hint)}") from None
    except Exception as error:  # anything a malformed pickle makes the unpickler raise
        raise UnpickleError(f"{label}: not a readable pickle of the expected data "
                            f"({_one_line(error)}){_tail(hint)}") from None


def _unpickle(stream: IO[bytes], allowed: Collection[Global], what: str, hint: str,
              encoding: str, errors: str) -> Any:
    unpickler = RestrictedUnpickler(stream, allowed, what=what, hint=hint, encoding=encoding,
                                    errors=errors)
    return unpickler.load()


def loads(data: bytes, allowed: Collection[Global] = (), **options: Any) -> Any:
    """:func:`load` from bytes in memory (``what`` defaults to ``"<bytes>"``)."""
    options.setdefault("what", "<bytes>")
    return load(io.BytesIO(data), allowed, **options)


def _name(source: str | os.PathLike[str] | IO[bytes]) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<stream>"))


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _tail(hint: str) -> str:
    return f"; {hint}" if hint else ""
