"""Run-directory locks, exercised with real processes: racing acquirers, killed, stopped and
"remote" holders, concurrent breakers of a stale lock, and a child inheriting its parent's lock."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from samat.errors import SamatError
from samat.locking import (
    BREAKER_STALE_S,
    BREAKER_SUFFIX,
    HEARTBEAT_ENV,
    INHERIT_ENV,
    LOCK_NAME,
    STALE_AFTER_ENV,
    Holder,
    LockHeld,
    LockLost,
    RunLock,
    is_stale,
    lock_state,
)

HB, STALE = 0.1, 0.5
FAST = {"heartbeat_s": HB, "stale_after_s": STALE}
HAVE_PROC = Path("/proc/self/stat").exists()

# A lock holder in its own process: prints its token, then answers "verify" and "release" lines.
# An optional second argument is the host name it claims (a host sharing the filesystem).
HOLDER = f"""
import socket, sys
from pathlib import Path
from samat.locking import RunLock
if len(sys.argv) > 2:
    socket.gethostname = lambda: sys.argv[2]
lock = RunLock(Path(sys.argv[1]), heartbeat_s={HB}, stale_after_s={STALE})
assert lock.acquire()
print(lock.token, flush=True)
for line in sys.stdin:
    if line.strip() == "verify":
        try:
            lock.verify()
            print("ok", flush=True)
        except Exception as exc:
            print(type(exc).__name__, exc, flush=True)
    else:
        lock.release()
        print("released", flush=True)
"""


@pytest.fixture
def holder() -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """``holder(directory, host=None)``: a process holding ``directory``'s lock, and its token."""
    procs: list[subprocess.Popen] = []

    def start(directory: Path, host: str | None = None) -> tuple[subprocess.Popen, str]:
        args = [sys.executable, "-c", HOLDER, str(directory), *([host] if host else [])]
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc, proc.stdout.readline().strip()

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def _command(proc: subprocess.Popen, line: str) -> str:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def _write_lock(path: Path, age: float = 0.0, **fields: object) -> str:
    """A lock (or breaker) file as another holder would leave it, its heartbeat ``age`` s old."""
    record = {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": "", "start_time": "",
              "token": secrets.token_hex(16), "started": time.time(), **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    _age(path, age)
    return str(record["token"])


def _age(path: Path, age: float) -> None:
    then = time.time() - age
    os.utime(path, (then, then))


def _race_worker(directory: str, rounds: int, barrier, results) -> None:
    """Each round: acquire together with the others, report, and release once checked."""
    for _ in range(rounds):
        barrier.wait()
        lock = RunLock(Path(directory), **FAST)
        results.put(lock.token if lock.acquire() else None)
        barrier.wait()
        barrier.wait()
        lock.release()
        barrier.wait()


def _race(directory: Path, workers: int, rounds: int, prepare: Callable[[], object]) -> None:
    """``workers`` processes acquire ``directory`` together, ``rounds`` times: one wins each."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(str(directory), rounds, barrier, results))
             for _ in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for _ in range(rounds):
            prepare()
            barrier.wait(timeout=60)  # go
            barrier.wait(timeout=30)  # all have tried
            winners = [t for t in (results.get(timeout=10) for _ in range(workers)) if t]
            assert len(winners) == 1
            assert lock_state(directory, STALE)[1].token == winners[0]
            barrier.wait(timeout=30)  # checked
            barrier.wait(timeout=30)  # released
            assert lock_state(directory, STALE) == ("free", None)
    except BaseException:
        barrier.abort()  # let the workers stop
        raise
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * workers


def test_acquire_release_and_lock_file(tmp_path: Path):
    run_dir = tmp_path / "sweep" / "point"
    lock = RunLock(run_dir, **FAST)
    assert lock.acquire() and lock.acquire()
    record = json.loads((run_dir / LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["token"] == lock.token and len(lock.token) == 32
    assert set(record) == {"pid", "host", "boot_id", "start_time", "token", "started"}
    assert bool(record["start_time"]) == HAVE_PROC
    assert (run_dir / LOCK_NAME).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # no temporary left
    lock.verify()

    other = RunLock(run_dir, **FAST)
    assert not other.acquire()  # a live holder, even in this very process
    other.release()  # never held: leaves the file alone
    with pytest.raises(LockHeld, match=rf"locked by pid {os.getpid()} on .*heartbeat 0 s ago"):
        with other:
            pass
    assert lock_state(run_dir)[0] == "held"

    lock.release()
    lock.release()
    assert lock_state(run_dir) == ("free", None) and not list(run_dir.iterdir())
    with pytest.raises(LockLost, match="not held"):
        lock.verify()
    with other:
        assert other.holder().token == other.token
    first = other.token
    with other:
        assert other.token != first  # a new token per acquisition
    assert not (run_dir / LOCK_NAME).exists()


def test_racing_processes_one_winner_per_round(tmp_path: Path):
    _race(tmp_path, workers=3, rounds=30, prepare=lambda: None)


def test_racing_breakers_of_one_stale_lock_one_winner(tmp_path: Path):
    # a lock left by a process on another host that stopped heartbeating
    _race(tmp_path, workers=3, rounds=10,
          prepare=lambda: _write_lock(tmp_path / LOCK_NAME, age=5, host="gone-host"))
    assert not (tmp_path / (LOCK_NAME + BREAKER_SUFFIX)).exists()


def test_heartbeat_then_killed_holder_goes_stale_only_after_stale_time(tmp_path: Path, holder):
    proc, token = holder(tmp_path)
    path = tmp_path / LOCK_NAME
    first = path.stat().st_mtime_ns
    time.sleep(3 * HB)
    assert path.stat().st_mtime_ns > first
    state, current = lock_state(tmp_path, STALE)
    assert state == "held" and (current.pid, current.token) == (proc.pid, token)

    proc.kill()
    proc.wait()
    killed = time.monotonic()
    lock = RunLock(tmp_path, **FAST)
    assert not lock.acquire()
    time.sleep(STALE - 3 * HB)
    assert lock_state(tmp_path, STALE)[0] == "held"  # dead, but its heartbeat is recent
    while lock_state(tmp_path, STALE)[0] == "held":
        assert time.monotonic() - killed < 5
        time.sleep(0.02)
    assert time.monotonic() - killed >= STALE - 2 * HB
    assert lock.acquire()
    assert lock.holder().token == lock.token
    lock.release()


def test_stopped_holder_on_this_host_is_never_stale(tmp_path: Path, holder):
    proc, token = holder(tmp_path)
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(STALE + 3 * HB)
    state, current = lock_state(tmp_path, STALE)
    assert state == "held" and current.heartbeat_age_s > STALE and current.token == token
    assert not RunLock(tmp_path, **FAST).acquire()

    os.kill(proc.pid, signal.SIGCONT)
    time.sleep(3 * HB)
    assert lock_state(tmp_path, STALE)[1].heartbeat_age_s < STALE  # heartbeating again
    assert _command(proc, "verify") == "ok"
    assert _command(proc, "release") == "released"
    assert lock_state(tmp_path) == ("free", None)


def test_takeover_from_another_host_then_old_holder_cannot_release(tmp_path: Path, holder):
    proc, token = holder(tmp_path, host="host-b")
    assert lock_state(tmp_path, STALE)[1].host == "host-b"
    os.kill(proc.pid, signal.SIGSTOP)  # e.g. host-b stalls: its heartbeat stops
    lock = RunLock(tmp_path, **FAST)
    assert not lock.acquire()
    time.sleep(STALE + 3 * HB)
    assert lock_state(tmp_path, STALE)[0] == "stale"
    assert lock.acquire()

    os.kill(proc.pid, signal.SIGCONT)
    reply = _command(proc, "verify")
    assert reply.startswith("LockLost") and f"pid {os.getpid()}" in reply
    assert _command(proc, "release") == "released"
    assert lock.holder().token == lock.token
    lock.verify()
    lock.release()
    assert lock_state(tmp_path) == ("free", None)


def test_staleness_by_host_boot_and_process(tmp_path: Path):
    path = tmp_path / LOCK_NAME
    _write_lock(path, age=0.2, host="elsewhere")
    assert lock_state(tmp_path, STALE)[0] == "held"  # fresh heartbeat: held, whoever it is
    assert not RunLock(tmp_path, **FAST).acquire()
    _age(path, 5)
    state, current = lock_state(tmp_path, STALE)
    assert state == "stale"
    assert current.describe() == f"pid {os.getpid()} on elsewhere, heartbeat 5 s ago"
    lock = RunLock(tmp_path, **FAST)
    assert lock.acquire() and lock.holder().token == lock.token
    lock.release()

    assert not path.exists()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    _write_lock(path, age=5, pid=int(finished.stdout))
    assert lock_state(tmp_path, STALE)[0] == "stale"  # this host, pid gone
    path.unlink()
    with RunLock(tmp_path, **FAST) as own:  # this process, heartbeat far in the past
        record = json.loads(path.read_text())
        _write_lock(tmp_path / "copy" / LOCK_NAME, age=3600, **{**record, "token": "x"})
        assert lock_state(tmp_path / "copy", STALE)[0] == "held"
        if HAVE_PROC:  # the same pid with another start time: a reused pid
            _write_lock(tmp_path / "copy" / LOCK_NAME, age=3600, **{**record, "start_time": "1"})
            assert lock_state(tmp_path / "copy", STALE)[0] == "stale"
        if record["boot_id"]:  # this pid, but before a reboot
            _write_lock(tmp_path / "copy" / LOCK_NAME, age=3600, **{**record, "boot_id": "old"})
            assert lock_state(tmp_path / "copy", STALE)[0] == "stale"
        own.verify()


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc")
def test_zombie_holder_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)  # exited, not yet reaped
    holder = Holder(proc.pid, socket.gethostname(), "", "", "t", 0.0, heartbeat_age_s=5)
    assert is_stale(holder, STALE) and not is_stale(holder, 10)
    proc.wait()


def test_child_inherits_the_lock_through_its_environment(tmp_path: Path):
    parent = RunLock(tmp_path, **FAST)
    assert parent.acquire()
    child = f"""
import os, threading
from pathlib import Path
from samat.locking import RunLock
lock = RunLock(Path({str(tmp_path)!r}))
print(lock.acquire(), lock.token == os.environ.get("{INHERIT_ENV}"), lock.holder().inherited,
      threading.active_count())
lock.verify()
with RunLock(Path({str(tmp_path)!r})):
    pass
lock.release()
print((Path({str(tmp_path)!r}) / {LOCK_NAME!r}).exists())
"""
    env = {**os.environ, **parent.child_env()}
    out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["True", "True", "True", "1", "True"]  # no heartbeat thread of its own
    parent.verify()

    env.pop(INHERIT_ENV)
    alone = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True)
    assert alone.returncode == 1 and alone.stdout.split() == ["False", "False", "False", "1"]
    assert "LockLost" in alone.stderr
    with pytest.raises(RuntimeError):
        RunLock(tmp_path).child_env()
    parent.verify()
    parent.release()
    assert lock_state(tmp_path) == ("free", None)


@pytest.mark.parametrize("content", [b"", b'{"pid": 12, "ho', b"[1, 2]", b'{"pid": 12}',
                                     b"\xff\xfe"])
def test_corrupt_lock_file_is_held_until_its_mtime_is_old(tmp_path: Path, content: bytes):
    path = tmp_path / LOCK_NAME
    path.write_bytes(content)
    state, current = lock_state(tmp_path, STALE)
    assert state == "held" and not current.known
    assert current.describe() == "an unknown holder, heartbeat 0 s ago"
    with pytest.raises(LockHeld, match="unknown holder"):
        with RunLock(tmp_path, **FAST):
            pass
    _age(path, 5)
    assert lock_state(tmp_path, STALE)[0] == "stale"
    with RunLock(tmp_path, **FAST) as lock:
        assert lock.holder().token == lock.token


def test_breaker_file_blocks_takeover_until_it_is_old(tmp_path: Path):
    path, breaker = tmp_path / LOCK_NAME, tmp_path / (LOCK_NAME + BREAKER_SUFFIX)
    stale_token = _write_lock(path, age=5, host="elsewhere")
    _write_lock(breaker, age=1, host="elsewhere")  # someone is breaking it right now
    lock = RunLock(tmp_path, **FAST)
    assert not lock.acquire()
    assert lock.holder().token == stale_token
    _age(breaker, BREAKER_STALE_S + 1)  # ... or died while doing so
    assert lock.acquire()
    assert not breaker.exists()
    breaker.write_bytes(b"")  # a half-written breaker is judged by its age too
    _age(breaker, BREAKER_STALE_S + 1)
    lock.release()
    _write_lock(path, age=5, host="elsewhere")
    assert lock.acquire()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]
    lock.release()


def test_heartbeat_notices_a_removed_lock(tmp_path: Path):
    lock = RunLock(tmp_path, **FAST)
    assert lock.acquire()
    path = tmp_path / LOCK_NAME
    content = path.read_bytes()
    path.unlink()
    with pytest.raises(LockLost, match="was removed"):
        lock.verify()
    time.sleep(3 * HB)
    path.write_bytes(content)  # back, but nobody heartbeats it any more
    with pytest.raises(LockLost, match="heartbeat stopped"):
        lock.verify()
    lock.release()
    assert not path.exists()


def test_filesystem_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    lock = RunLock(tmp_path, **FAST)
    assert lock.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == lock.token
    assert not RunLock(tmp_path, **FAST).acquire()
    lock.release()
    assert not list(tmp_path.iterdir())


def test_times_from_environment_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(HEARTBEAT_ENV, "2")
    monkeypatch.setenv(STALE_AFTER_ENV, "9")
    lock = RunLock(tmp_path)
    assert (lock.heartbeat_s, lock.stale_after_s) == (2, 9)
    assert RunLock(tmp_path, heartbeat_s=1).heartbeat_s == 1
    with pytest.raises(SamatError, match="shorter"):
        RunLock(tmp_path, heartbeat_s=9)
    monkeypatch.setenv(STALE_AFTER_ENV, "soon")
    with pytest.raises(SamatError, match="SAMAT_LOCK_STALE_AFTER_S='soon'"):
        RunLock(tmp_path)
    with pytest.raises(SamatError, match="positive"):
        RunLock(tmp_path, heartbeat_s=0, stale_after_s=1)
