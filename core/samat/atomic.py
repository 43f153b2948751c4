"""Crash-safe file writes and strict JSON.

Every file samat writes into a run directory goes through :func:`write_atomic` (or
:func:`write_atomic_path`, or :func:`write_directory` for a directory): the content is
written to a uniquely named temporary file beside the target, flushed and ``fsync``-ed, renamed
over the target, and the directory is ``fsync``-ed. A reader (or a process resuming after
SIGKILL or a power cut) sees the old file or the new one, never a mix; two writers never share a
temporary file.

JSON is written strictly (RFC 8259): a non-finite float becomes ``null``, never the bare
``NaN``/``Infinity`` that Python's ``json`` emits by default.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()
"""The mode ``open()`` gives new files under this process's umask (``mkstemp`` uses 0600,
which would hide results from the other users of a shared filesystem)."""
_DIR_MODE = 0o777 & ~_umask()
"""The mode ``mkdir`` gives new directories (``mkdtemp`` uses 0700)."""
_SUFFIX = ".partial"


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Create or replace ``path`` with what ``write(stream)`` writes, atomically and durably."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_SUFFIX)
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic_path(path: Path, write: Callable[[Path], None]) -> None:
    """:func:`write_atomic` for writers that take a file name (``write(temporary_path)``),
    such as ``safetensors.torch.save_model``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_SUFFIX)
    try:
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, _MODE)  # after: the writer may have replaced the file
        _fsync_file(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_directory(path: Path, fill: Callable[[Path], None]) -> None:
    """Create or replace the directory ``path`` with what ``fill(temporary_directory)`` writes
    into a new directory beside it, renamed into place once complete (every file ``fsync``-ed):
    a reader never sees a partly written directory. An old ``path`` is renamed aside and
    removed after the new one is in place."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=_SUFFIX))
    try:
        os.chmod(tmp, _DIR_MODE)
        fill(tmp)
        for file in (f for f in tmp.rglob("*") if f.is_file()):
            _fsync_file(file)
        fsync_dir(tmp)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old.",
                                        suffix=_SUFFIX))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """:func:`write_atomic` of UTF-8 ``text``."""
    data = text.encode("utf-8")
    write_atomic(path, lambda stream: stream.write(data))


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (also inside dicts, lists, tuples) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def _plain(obj: Any) -> Any:
    """JSON fallback for tensors/NumPy scalars (``.item()``), sets/tuples and anything else."""
    if hasattr(obj, "item"):
        try:
            return obj.item()
        except (TypeError, ValueError, RuntimeError):
            pass
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    return str(obj)


def to_json(data: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``data`` (non-finite floats as ``null``; see :func:`finite`)."""
    plain = json.loads(json.dumps(data, default=_plain))  # NumPy/torch scalars -> floats first
    return json.dumps(finite(plain), indent=indent, allow_nan=False)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented strict JSON, atomically."""
    write_text(path, to_json(data, indent=2) + "\n")


def remove_temporaries(directory: Path) -> None:
    """Delete the temporary files and directories an interrupted write (:func:`write_atomic`,
    :func:`write_directory`, ...) left in ``directory``."""
    if directory.is_dir():
        for tmp in directory.glob(f".*{_SUFFIX}"):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
