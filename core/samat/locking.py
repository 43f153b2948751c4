"""Per-run-directory locks: any number of processes, on any hosts sharing the filesystem, train
each run directory exactly once.

The lock is the file ``<run dir>/.samat.lock``, holding JSON ``{pid, host, boot_id, start_time,
token, started}``. It is created atomically and complete: the record is written to a unique
temporary file, hard-linked to the lock name (which fails if the lock exists) and the temporary
name removed; where the filesystem has no hard links an exclusive create plus write is used, so
a reader may briefly see an empty (corrupt) file. While held, a daemon thread touches the file's
mtime every ``heartbeat_s``; a reader opens the file before ``fstat`` so that NFS revalidates the
mtime (close-to-open consistency) instead of serving a cached one.

A lock is *stale* when its heartbeat is older than ``stale_after_s`` and its holder cannot be
alive: it ran on another host or another boot of this host, or its pid is gone or now belongs
to a process with another start time. A live process on this host is never stale, however old
its heartbeat (a stopped process). Heartbeat ages compare the file's mtime (set by the file
server) with the local clock, so ``stale_after_s`` must exceed the clock skew between hosts.

Breaking a stale lock takes a short-lived breaker file ``.samat.lock.break``; nobody deletes a
lock or breaker without first moving it aside atomically (``rename`` to a unique name) and
checking there that it is still the one it meant to delete, putting it back otherwise.

A process that holds a lock and runs the directory in a child passes
:meth:`RunLock.child_env`; in the child :meth:`RunLock.acquire` then succeeds without taking the
lock, and :meth:`RunLock.release` leaves it to the parent, which keeps the heartbeat.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import math
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from samat.errors import SamatError

log = logging.getLogger("samat")

LOCK_NAME = ".samat.lock"
BREAKER_SUFFIX = ".break"
INHERIT_ENV = "SAMAT_LOCK_TOKEN"
HEARTBEAT_ENV = "SAMAT_LOCK_HEARTBEAT_S"
STALE_AFTER_ENV = "SAMAT_LOCK_STALE_AFTER_S"
DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_STALE_AFTER_S = 30.0
BREAKER_STALE_S = 60.0
"""A breaker file older than this was left by a process that died while breaking a lock."""

_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}

__all__ = ["BREAKER_STALE_S", "BREAKER_SUFFIX", "DEFAULT_HEARTBEAT_S", "DEFAULT_STALE_AFTER_S",
           "HEARTBEAT_ENV", "INHERIT_ENV", "LOCK_NAME", "STALE_AFTER_ENV", "Holder", "LockHeld",
           "LockLost", "RunLock", "acquire_unless_alive", "holder_gone", "is_stale",
           "lock_state"]


class LockHeld(SamatError):
    """Another process holds the run directory's lock."""


class LockLost(SamatError):
    """The lock this process held was removed or taken over."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as read from its file; an unreadable file gives ``pid`` 0 and empty
    strings (:attr:`known` is False)."""

    pid: int
    host: str
    boot_id: str
    start_time: str  # /proc/<pid>/stat start time, "" where unknown
    token: str
    started: float  # wall-clock time of the acquisition
    heartbeat_age_s: float  # seconds since the file's mtime
    inherited: bool = False  # the token is this process's SAMAT_LOCK_TOKEN (our parent's lock)

    @property
    def known(self) -> bool:
        return bool(self.token)

    def describe(self) -> str:
        """``"pid 123 on host-a, heartbeat 4 s ago"``."""
        who = f"pid {self.pid} on {self.host}" if self.known else "an unknown holder"
        return f"{who}, heartbeat {self.heartbeat_age_s:.0f} s ago"


def is_stale(holder: Holder, stale_after_s: float) -> bool:
    """Whether ``holder``'s heartbeat is older than ``stale_after_s`` and it cannot be alive."""
    if holder.heartbeat_age_s <= stale_after_s:
        return False
    if not holder.known or holder.host != socket.gethostname():
        return True
    if holder.boot_id and _boot_id() and holder.boot_id != _boot_id():
        return True
    return not _process_running(holder.pid, holder.start_time)


def holder_gone(holder: Holder) -> bool:
    """Whether ``holder`` is a process of this host (this boot) that no longer runs: its lock
    becomes stale once its heartbeat is old enough, and can be waited for."""
    return (holder.known and holder.host == socket.gethostname()
            and (not holder.boot_id or holder.boot_id == _boot_id())
            and not _process_running(holder.pid, holder.start_time))


def acquire_unless_alive(lock: RunLock, waiting: Callable[[Holder], None] | None = None
                         ) -> bool:
    """``lock.acquire()``; while the holder is a dead process of this host
    (:func:`holder_gone`), wait for its lock to go stale and take it (``waiting(holder)`` is
    called once first). False if a live holder — or one that cannot be told dead, on another
    host with a fresh heartbeat — keeps it."""
    deadline = time.monotonic() + lock.stale_after_s + lock.heartbeat_s
    told = False
    while not lock.acquire():
        holder = lock.holder()
        if holder is None or not holder_gone(holder) or time.monotonic() >= deadline:
            if holder is None:
                continue  # released between the two looks: try again
            return False
        if waiting is not None and not told:
            waiting(holder)
            told = True
        time.sleep(min(1.0, lock.heartbeat_s))
    return True


def lock_state(directory: Path, stale_after_s: float | None = None) -> tuple[str, Holder | None]:
    """``("free", None)``, ``("held", holder)`` or ``("stale", holder)`` for ``directory``."""
    holder = _read(Path(directory) / LOCK_NAME)
    if holder is None:
        return "free", None
    stale_after_s = _seconds(stale_after_s, STALE_AFTER_ENV, DEFAULT_STALE_AFTER_S)
    return ("stale" if is_stale(holder, stale_after_s) else "held"), holder


class RunLock:
    """Exclusive lock on one run directory, for processes on any host that shares it.

    ``with RunLock(run_dir): ...`` runs the block holding the lock, or raises :class:`LockHeld`.
    ``heartbeat_s`` and ``stale_after_s`` default to ``$SAMAT_LOCK_HEARTBEAT_S`` (else 5 s) and
    ``$SAMAT_LOCK_STALE_AFTER_S`` (else 30 s).
    """

    def __init__(self, directory: Path, *, heartbeat_s: float | None = None,
                 stale_after_s: float | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.heartbeat_s = _seconds(heartbeat_s, HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S)
        self.stale_after_s = _seconds(stale_after_s, STALE_AFTER_ENV, DEFAULT_STALE_AFTER_S)
        if self.heartbeat_s >= self.stale_after_s:
            raise SamatError(f"lock heartbeat ({self.heartbeat_s:g} s) must be shorter than its "
                             f"stale time ({self.stale_after_s:g} s)")
        self.token = ""
        self._held = False
        self._inherited = False
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting (breaking it if stale); True if it is now ours, or our
        parent's passed down through ``$SAMAT_LOCK_TOKEN``."""
        if self._held:
            return True
        self.directory.mkdir(parents=True, exist_ok=True)
        inherited = os.environ.get(INHERIT_ENV)
        if inherited:
            current = _read(self.path)
            if current is not None and current.token == inherited:
                self.token, self._held, self._inherited, self._lost = inherited, True, True, None
                return True
        token = secrets.token_hex(16)
        if not (_publish(self.path, _record(token)) or self._take_over(token)):
            return False
        self.token, self._held, self._inherited, self._lost = token, True, False, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(token, self._stop), daemon=True,
                                        name=f"samat-lock {self.directory}")
        self._thread.start()
        return True

    def release(self) -> None:
        """Give the lock up (idempotent). The file is removed only if it still holds our token,
        and never by a child that inherited it."""
        if not self._held:
            return
        self._held = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._inherited:
            token = self.token
            _remove(self.path, lambda holder: holder.token == token)

    def verify(self) -> None:
        """Raise :class:`LockLost` unless we hold the lock and its file still holds our token."""
        if not self._held:
            raise LockLost(f"{self.directory}: the lock is not held")
        current = _read(self.path)
        if current is None:
            reason = f"{self.path} was removed"
        elif current.token != self.token:
            reason = f"it is now held by {current.describe()}"
        elif self._lost is not None:
            reason = f"its heartbeat stopped ({self._lost})"
        else:
            return
        raise LockLost(f"lost the lock on {self.directory}: {reason}")

    def holder(self) -> Holder | None:
        """Who holds the lock now (possibly us), or None if nobody does."""
        return _read(self.path)

    def child_env(self) -> dict[str, str]:
        """Environment entries that let a child process run this directory under our lock."""
        if not self._held:
            raise RuntimeError(f"{self.path}: child_env() needs the lock held")
        return {INHERIT_ENV: self.token}

    def __enter__(self) -> RunLock:
        if not self.acquire():
            holder = self.holder()
            who = holder.describe() if holder is not None else "another process"
            raise LockHeld(
                f"{self.directory} is locked by {who} (lock file {self.path}; the lock of a "
                f"holder that died goes stale {self.stale_after_s:g} s after its last heartbeat)"
            )
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _take_over(self, token: str) -> bool:
        """After a failed create: create the lock if it has gone meanwhile, or break it if it
        is stale, holding the breaker file while doing so."""
        current = _read(self.path)
        if current is None:
            return _publish(self.path, _record(token))
        if not is_stale(current, self.stale_after_s):
            return False
        breaker = self.path.with_name(LOCK_NAME + BREAKER_SUFFIX)
        if not _publish(breaker, _record(token)):
            seen = _read(breaker)
            if seen is not None and seen.heartbeat_age_s > BREAKER_STALE_S:
                _remove(breaker, lambda b: b.token == seen.token
                        and b.heartbeat_age_s > BREAKER_STALE_S)
            if not _publish(breaker, _record(token)):
                return False
        try:
            _remove(self.path, lambda h: h.token == current.token
                    and is_stale(h, self.stale_after_s))
            return _publish(self.path, _record(token))  # may still lose to a plain acquirer
        finally:
            _remove(breaker, lambda b: b.token == token)

    def _beat(self, token: str, stop: threading.Event) -> None:
        """Heartbeat thread: touch the lock every ``heartbeat_s`` until ``stop``; if the file
        is gone or holds another token, remember it for :meth:`verify` and end."""
        while not stop.wait(self.heartbeat_s):
            try:
                with open(self.path, "rb") as f:
                    if _parse(f.read(), 0.0).token != token:
                        self._lost = "another process took the lock over"
                        return
                    os.utime(f.fileno())
            except FileNotFoundError:
                self._lost = "the lock file was removed"
                return
            except OSError as exc:  # e.g. a transient NFS error: try again next beat
                log.debug("lock heartbeat on %s failed: %s", self.path, exc)


def _seconds(value: float | None, env: str, default: float) -> float:
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SamatError(f"{env}={raw!r}: expected a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise SamatError(f"{env}: lock times must be positive seconds, got {value!r}")
    return value


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of ``pid`` from /proc, or None if it has no /proc entry."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name, field 2, may hold spaces
    return fields[0], fields[19]  # fields 3 and 22


def _process_running(pid: int, start_time: str) -> bool:
    """Whether ``pid`` is a live (not zombie) process on this host, started at ``start_time``
    where that is known."""
    if pid <= 0:
        return False
    if not os.path.isdir("/proc/self"):  # no /proc: signal 0 tells whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and start_time in ("", stat[1])


def _record(token: str) -> bytes:
    pid = os.getpid()
    stat = _proc_stat(pid)
    return json.dumps({
        "pid": pid, "host": socket.gethostname(), "boot_id": _boot_id(),
        "start_time": stat[1] if stat else "", "token": token, "started": time.time(),
    }).encode()


def _parse(raw: bytes, heartbeat_age_s: float) -> Holder:
    """The holder a lock file's content names; an unknown one if the content is not a record."""
    try:
        data = json.loads(raw)
        holder = Holder(
            pid=int(data["pid"]), host=str(data["host"]), boot_id=str(data.get("boot_id", "")),
            start_time=str(data.get("start_time", "")), token=str(data["token"]),
            started=float(data.get("started", 0.0)), heartbeat_age_s=heartbeat_age_s,
            inherited=data["token"] == os.environ.get(INHERIT_ENV),
        )
    except (ValueError, TypeError, KeyError):
        holder = None
    if holder is None or not holder.token:
        return Holder(0, "", "", "", "", 0.0, heartbeat_age_s)
    return holder


def _read(path: Path) -> Holder | None:
    """The holder recorded in ``path``, or None if there is no such file."""
    try:
        with open(path, "rb") as f:
            mtime = os.fstat(f.fileno()).st_mtime
            raw = f.read()
    except FileNotFoundError:
        return None
    return _parse(raw, max(0.0, time.time() - mtime))


def _publish(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data``, atomically and only if it does not exist yet."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # readable by other users sharing the directory, as the fallback's
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return _link(Path(tmp), path)
    finally:
        os.unlink(tmp)


def _link(src: Path, dst: Path) -> bool:
    """Give ``src``'s content the name ``dst`` unless ``dst`` exists: a hard link, or an
    exclusive create and write where the filesystem has no hard links."""
    try:
        os.link(src, dst)
    except FileExistsError:
        try:  # over NFS a link whose reply was lost is retried and fails although it was made
            return os.path.samefile(src, dst)
        except FileNotFoundError:
            return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        try:
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(src.read_bytes())
    return True


def _remove(path: Path, ok: Callable[[Holder], bool]) -> bool:
    """Delete the lock or breaker file ``path`` if its holder passes ``ok``, and never one
    that does not: the file is moved aside atomically and checked again there, and put back if
    it was replaced in between."""
    current = _read(path)
    if current is None or not ok(current):
        return False
    aside = path.with_name(f"{path.name}.{secrets.token_hex(8)}.aside")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        moved = _read(aside)
        if moved is not None and ok(moved):
            return True
        if not _link(aside, path):
            log.warning("%s changed while being removed and could not be put back", path)
        return False
    finally:
        aside.unlink()
