"""The ``ray`` launcher: one Ray task per unfinished point, with the point's resources, through
Ray (``pip install 'samat[ray]'``). The sweep process is the Ray driver: :meth:`launch` returns
once every task has ended.

Where the tasks run (``sweep.launcher.address``):

- unset: ``$RAY_ADDRESS`` if set; else the Ray that ``ray start`` last started on this machine,
  if its address file (``ray_current_cluster`` in Ray's temporary directory: ``$RAY_TMPDIR/ray``,
  else ``$TMPDIR/ray``, else ``/tmp/ray``) names an address that accepts a connection; else a
  local Ray started for the sweep;
- ``local``: always a fresh local Ray for the sweep;
- ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``: that cluster, as ``ray.init`` understands it.

A local Ray started for the sweep listens on 127.0.0.1 only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
in its processes), uses every CPU and GPU of the machine and is shut down when the sweep ends,
also on Ctrl-C or an error; the driver of a cluster at a loopback address gets the same setting.
A cluster the sweep connected to is left running.

Each task runs :func:`samat.sweep.point.run_point` on the sweep that ``sweep.json`` describes, so
the sweep directory must be at the same path on every node (shared storage); the task's log goes
to the point's ``sweep_output.txt``, its launch record (``point.json``) names launcher ``ray``,
the task id (``job_id``), the attempt, node and worker pid. A task runs in a fresh worker process
(``max_calls=1``) whose environment adds the driver's ``PYTHONPATH`` and ``SAMAT_*`` variables,
then ``runtime_env.env_vars``, then ``env``. A task lost with its worker or node is retried up to
``max_retries`` times and resumes from the point's checkpoint: the lost attempt's lock is waited
for until it goes stale (``SAMAT_LOCK_STALE_AFTER_S``), also when that attempt ran on another
node. A task that raises, or that is lost once more than its retries allow, is recorded failed;
the other tasks go on. A point that another live process holds is waited for and submitted again
if that process gives it up unfinished. Ctrl-C or SIGTERM cancels the tasks: a running one
checkpoints at its next step and is recorded ``stopped`` (re-run the sweep to resume it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from samat import results
from samat.errors import SamatError, first_line
from samat.lifeline import PARENT_ENV
from samat.locking import INHERIT_ENV
from samat.sweep.grid import read_record, write_record
from samat.sweep.launcher import Launcher
from samat.sweep.point import SKIPPED
from samat.sweep.ray_address import (
    INSTALL,
    LOOPBACK_ENV,
    Target,
    check_reachable,
    import_ray,
    target,
)
from samat.sweep.ray_task import run_task

log = logging.getLogger("samat")

NOT_PROPAGATED = frozenset({INHERIT_ENV, PARENT_ENV, "SAMAT_LAUNCHER"})
"""``SAMAT_*`` variables of the driver that must not reach the tasks."""
RESERVED = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory_gb",
            "object_store_memory": "memory_gb"}
"""Ray resources that have their own ``sweep.launcher`` key."""
POLL_S = 2.0
"""How often the driver looks at points that another process holds."""
CANCEL_WAIT_S = 10.0
"""How long a cancelled sweep waits for its running tasks to end (and release their locks)."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class RayOptions:
    """``sweep.launcher`` parameters of the Ray launcher (see the module docstring)."""

    address: str | None = None  # unset (see above), local, auto, HOST:PORT or ray://HOST:PORT
    num_cpus: float = 1  # CPUs per point (Ray sets OMP_NUM_THREADS to it)
    num_gpus: float = 0  # GPUs per point; a fraction below 1 lets points share a GPU
    memory_gb: float | None = None  # memory reserved per point (Ray's logical "memory")
    resources: Any = None  # {name: amount}: custom Ray resources per point
    accelerator_type: str | None = None  # only nodes with this accelerator, e.g. A100
    max_retries: int = 3  # retries of a task lost with its worker or node
    max_parallel: int | None = None  # at most this many points submitted at once
    namespace: str | None = None  # the Ray namespace of the sweep's job
    env: Any = None  # {NAME: value}: extra environment variables of the tasks
    runtime_env: Any = None  # Ray runtime_env of the tasks (pip, working_dir, env_vars, ...)



class RayLauncher(Launcher):
    """One Ray task per point (see the module docstring)."""

    name = "ray"
    Options = RayOptions
    blocking = True

    def __init__(self, sweep: Any, root: Path, options: RayOptions) -> None:
        super().__init__(sweep, root, options)
        self.failed: list[tuple[str, str]] = []
        self.task_ids: dict[int, str] = {}

    @classmethod
    def check(cls, options: RayOptions) -> None:
        o = options
        if o.address is not None and (not o.address.strip() or any(c.isspace()
                                                                   for c in o.address)):
            raise SamatError(f"sweep.launcher.address: expected local, auto, HOST:PORT or "
                             f"ray://HOST:PORT, got {o.address!r}")
        for key in ("num_cpus", "num_gpus"):
            _check_amount(f"sweep.launcher.{key}", getattr(o, key))
        if o.num_cpus == 0 and o.num_gpus == 0:
            raise SamatError("sweep.launcher.num_cpus: 0 with num_gpus 0 would run every point "
                             "at once; give each point some CPUs or GPUs")
        if o.memory_gb is not None and not o.memory_gb > 0:
            raise SamatError(f"sweep.launcher.memory_gb: must be > 0, got {o.memory_gb}")
        for key, value, least in (("max_retries", o.max_retries, 0),
                                  ("max_parallel", o.max_parallel, 1)):
            if value is not None and value < least:
                raise SamatError(f"sweep.launcher.{key}: must be >= {least}, got {value}")
        for key in ("namespace", "accelerator_type"):
            value = getattr(o, key)
            if value is not None and (not value.strip() or any(c.isspace() for c in value)):
                raise SamatError(f"sweep.launcher.{key}: expected a name, got {value!r}")
        if o.resources is not None:
            if not isinstance(o.resources, dict):
                raise SamatError("sweep.launcher.resources: expected a mapping of Ray resource "
                                 f"names to amounts such as {{fast_disk: 1}}, got {o.resources!r}")
            for key, value in o.resources.items():
                if str(key) in RESERVED:
                    raise SamatError(f"sweep.launcher.resources.{key}: use "
                                     f"sweep.launcher.{RESERVED[str(key)]} instead")
                _check_amount(f"sweep.launcher.resources.{key}", value)
        _check_env("sweep.launcher.env", o.env)
        if o.runtime_env is not None:
            if not isinstance(o.runtime_env, dict):
                raise SamatError("sweep.launcher.runtime_env: expected a mapping (Ray's "
                                 f"runtime_env, e.g. {{pip: [samat]}}), got {o.runtime_env!r}")
            _check_env("sweep.launcher.runtime_env.env_vars", o.runtime_env.get("env_vars"))

    def plan(self, todo: list[int]) -> list[str]:
        if not todo:
            return ["ray: nothing to run (every point is done or diverged)"]
        o, where = self.options, target(self.options.address)
        lines = [f"ray: {len(todo)} point(s) as Ray tasks, each {_asked(o)}; a task lost with "
                 f"its worker or node is retried up to {o.max_retries} time(s)"
                 + (f"; at most {o.max_parallel} at once" if o.max_parallel else "")]
        if where.local:
            cpus = os.cpu_count() or 1
            at_once = math.floor(cpus / o.num_cpus) if o.num_cpus else len(todo)
            at_once = min(len(todo), at_once, o.max_parallel or len(todo))
            lines.append(f"ray: on {where.shown}, 127.0.0.1 only ({cpus} CPUs: {at_once} "
                         "point(s) at once on CPUs; GPUs as Ray detects them)")
        else:
            lines.append(f"ray: on {where.shown}; the sweep directory {self.root.resolve()} "
                         "must be at that path on every node")
        if importlib.util.find_spec("ray") is None:  # not imported: launch may need a switch
            lines.append(f"ray: not installed here: {INSTALL}")
        return lines

    def launch(self, todo: list[int]) -> None:
        self.failed = []
        if not todo:
            return
        where = target(self.options.address)
        ray = import_ray(where.loopback)
        failed: list[tuple[int, str]] = []
        ours = self._connect(ray, where)
        try:
            with _sigterm_as_interrupt():  # after ray.init, which installs its own handler
                self._check_resources(ray, where)
                self._run(ray, todo, failed)
        finally:
            self.failed = [(self.sweep.points[i].name, why) for i, why in sorted(failed)]
            if ours:
                ray.shutdown()

    # -- driver ------------------------------------------------------------------------------

    def _connect(self, ray: Any, where: Target) -> bool:
        """Start or connect to Ray; True if this call did (and :meth:`launch` shuts it down)."""
        if ray.is_initialized():
            log.info("ray: using this process's Ray (%s)", ray.get_runtime_context().gcs_address)
            return False
        kwargs: dict[str, Any] = {"address": where.address, "namespace": self.options.namespace,
                                  "logging_level": logging.WARNING}
        if where.local:
            kwargs["include_dashboard"] = False
        check_reachable(where)
        saved = os.environ.get(LOOPBACK_ENV)
        if where.loopback and saved is None:
            os.environ[LOOPBACK_ENV] = "0"  # for the processes ray.init starts
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError,
                ray.exceptions.RayError) as exc:
            raise SamatError(f"sweep.launcher.address: cannot {'start' if where.local else 'reach'}"
                             f" {where.shown}: {first_line(exc)}") from None
        finally:
            if saved is None:
                os.environ.pop(LOOPBACK_ENV, None)
        total = ray.cluster_resources()
        nodes = len([n for n in ray.nodes() if n.get("Alive")])
        try:
            gcs = str(ray.get_runtime_context().gcs_address)
        except Exception:  # noqa: BLE001 — e.g. through Ray Client
            gcs = where.address
        if where.local:
            log.info("ray: started a local Ray for this sweep at %s (%g CPUs, %g GPUs; stopped "
                     "when the sweep ends)", gcs, total.get("CPU", 0), total.get("GPU", 0))
        else:
            at = "" if gcs in where.shown else f" at {gcs}"
            log.info("ray: connected to %s%s (%d node(s), %g CPUs, %g GPUs)", where.shown, at,
                     nodes, total.get("CPU", 0), total.get("GPU", 0))
        return True

    def _check_resources(self, ray: Any, where: Target) -> None:
        """A point that no node can take never starts: an error for a Ray started for the
        sweep, a warning for a cluster (nodes may still join)."""
        asked = _resources(self.options)
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(all(node.get(k, 0) >= v for k, v in asked.items()) for node in nodes):
            return
        lacking = [k for k in asked if all(node.get(k, 0) < asked[k] for node in nodes)]
        if lacking:
            key = lacking[0]
            most = max((node.get(key, 0) for node in nodes), default=0)
            if key == "memory":
                have = f"{most / 2**30:.3g} GB of memory"
            elif key.startswith("accelerator_type:"):
                have = "no such accelerator"
            else:
                have = f"{most:g} {key}"
            option = RESERVED.get(key) or ("accelerator_type" if key.startswith(
                "accelerator_type:") else f"resources.{key}")
            message = (f"sweep.launcher.{option}: each point asks for {_asked(self.options)} "
                       f"but the largest node of {where.shown} has {have}")
        else:
            message = (f"sweep.launcher: each point asks for {_asked(self.options)} but no node "
                       f"of {where.shown} has all of it")
        if where.local:
            raise SamatError(message)
        log.warning("ray: %s; the points wait until such a node joins (Ctrl-C to stop)", message)

    def _task_options(self) -> dict[str, Any]:
        o = self.options
        options: dict[str, Any] = {
            "num_cpus": o.num_cpus, "num_gpus": o.num_gpus, "max_retries": o.max_retries,
            "retry_exceptions": False, "runtime_env": task_runtime_env(o),
        }
        if o.memory_gb is not None:
            options["memory"] = int(o.memory_gb * 2**30)
        if o.resources:
            options["resources"] = {str(k): float(v) for k, v in o.resources.items()}
        if o.accelerator_type:
            options["accelerator_type"] = o.accelerator_type
        return options

    def _run(self, ray: Any, todo: list[int], failed: list[tuple[int, str]]) -> None:
        """Submit the points (at most ``max_parallel`` at once) and collect every task."""
        remote, options = ray.remote(max_calls=1)(run_task), self._task_options()
        root = self.root.resolve()
        waiting, busy = list(todo), []
        inflight: dict[Any, int] = {}
        told = False
        try:
            while waiting or inflight or busy:
                while waiting and (self.options.max_parallel is None
                                   or len(inflight) < self.options.max_parallel):
                    index = waiting.pop(0)
                    self._mark_submitted(index)
                    name = f"samat {self.sweep.points[index].name}"
                    ref = remote.options(**options, name=name).remote(str(root), index)
                    inflight[ref] = index
                    self.task_ids[index] = _task_id(ref)
                if not told:
                    later = f"; {len(waiting)} more as these end" if waiting else ""
                    log.info("ray: %d point(s) submitted as Ray tasks (%s each)%s",
                             len(inflight), _asked(self.options), later)
                    told = True
                ready: list[Any] = []
                if inflight:
                    ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
                else:
                    time.sleep(POLL_S)
                for ref in ready:
                    index = inflight.pop(ref)
                    outcome = self._collect(ray, ref, index)
                    if outcome == "running elsewhere":
                        busy.append(index)
                    elif outcome is not None:
                        failed.append((index, outcome))
                for index in list(busy):  # its holder is done with it: finished, or run it
                    status = self.sweep.points[index].status(self.root)
                    if status != "running":
                        busy.remove(index)
                        if status not in SKIPPED:
                            waiting.append(index)
        except BaseException:
            self._cancel(ray, inflight)
            raise

    def _mark_submitted(self, index: int) -> None:
        """Record the point ``submitted`` (the task records its id when it starts), unless a
        live process holds it."""
        point = self.sweep.points[index]
        path = self.root / point.name
        results.make_dirs(path, "--output")
        if point.status(self.root) != "running":
            write_record(path, state="submitted", launcher="ray", job_id=None, ray_attempt=0,
                         submitted=time.time(), host=None, pid=None, started=None, ended=None,
                         error=None)

    def _collect(self, ray: Any, ref: Any, index: int) -> str | None:
        """The end of point ``index``'s task: None when it needs nothing more, ``running
        elsewhere``, or why it failed (recorded in its ``point.json``)."""
        from ray import exceptions as rex

        point, task_id = self.sweep.points[index], self.task_ids[index]
        tag = f"[{index + 1}/{len(self.sweep.points)}] {point.name}"
        path = self.root / point.name
        try:
            outcome = ray.get(ref)
        except rex.TaskCancelledError:
            return None
        except rex.RayTaskError as exc:  # the task raised; run_point recorded it if it ran
            cause = getattr(exc, "cause", None) or exc
            return self._fail(index, task_id, f"{type(cause).__name__}: {first_line(cause)}")
        except rex.RuntimeEnvSetupError as exc:
            return self._fail(index, task_id, "Ray could not set up the task's runtime_env: "
                              f"{first_line(exc)}")
        except rex.RayError as exc:  # lost with its worker or node beyond its retries
            retries = self.options.max_retries
            return self._fail(index, task_id, (
                f"its Ray task {task_id} was lost with its worker or node "
                f"({type(exc).__name__}) {retries + 1} time(s), sweep.launcher.max_retries="
                f"{retries}; re-run the sweep to resume it from its checkpoint"))
        record = read_record(path)
        where = (f"Ray task {task_id}, attempt {record.get('ray_attempt')}, "
                 f"{record.get('host')} pid {record.get('pid')}")
        if outcome == "done":
            log.info("%s: finished (%s)", tag, where)
        elif outcome == "diverged":
            log.warning("%s: diverged (%s)", tag, where)
        elif outcome == "running elsewhere":
            log.info("%s: another process holds it; waiting for it", tag)
            return outcome
        else:  # failed (recorded by run_point) or stopped
            why = record.get("error") or outcome
            log.error("%s: %s (%s)", tag, why if outcome == "failed" else outcome, where)
            return why if outcome == "failed" else f"stopped: {why}; re-run the sweep to resume"
        return None

    def _fail(self, index: int, task_id: str, why: str) -> str:
        """Record point ``index`` failed — unless it finished, or someone else's attempt owns
        its record now — and say so."""
        point = self.sweep.points[index]
        path = self.root / point.name
        record = read_record(path)
        ours = record.get("launcher") == "ray" and (
            record.get("job_id") == task_id
            or (record.get("job_id") is None and record.get("state") == "submitted"))
        if ours and point.status(self.root, ours=True) not in SKIPPED:
            if record.get("state") == "failed" and record.get("error"):
                why = str(record["error"])  # the task's own words
            else:
                write_record(path, state="failed", ended=time.time(), error=why)
        log.error("[%d/%d] %s: failed: %s", index + 1, len(self.sweep.points), point.name, why)
        return why

    def _cancel(self, ray: Any, inflight: dict[Any, int]) -> None:
        """On Ctrl-C or an error: cancel the tasks (a running one gets KeyboardInterrupt and
        releases its lock; its checkpoint stays), wait briefly, and un-mark the points that
        never started."""
        if not inflight:
            return
        log.warning("ray: cancelling %d task(s)", len(inflight))
        for ref in inflight:
            try:
                ray.cancel(ref)
            except Exception as exc:  # noqa: BLE001 — best effort while stopping
                log.debug("ray: cancel failed: %s", exc)
        try:
            ray.wait(list(inflight), num_returns=len(inflight), timeout=CANCEL_WAIT_S)
        except Exception as exc:  # noqa: BLE001
            log.debug("ray: wait after cancel failed: %s", exc)
        for index in inflight.values():
            path = self.root / self.sweep.points[index].name
            record = read_record(path)
            if record.get("launcher") == "ray" and record.get("state") == "submitted":
                write_record(path, state="cancelled", ended=time.time())


# -- what a task gets ---------------------------------------------------------------------------


def task_runtime_env(options: RayOptions, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The tasks' ``runtime_env``: ``options.runtime_env`` with ``env_vars`` = the driver's
    ``PYTHONPATH`` and ``SAMAT_*`` variables, then ``runtime_env.env_vars``, then ``env``."""
    env = dict(os.environ if env is None else env)
    inherited = {k: v for k, v in env.items()
                 if (k == "PYTHONPATH" or k.startswith("SAMAT_")) and k not in NOT_PROPAGATED}
    runtime_env = dict(options.runtime_env or {})
    env_vars = {**inherited, **_strings(runtime_env.get("env_vars")), **_strings(options.env)}
    runtime_env["env_vars"] = env_vars
    return runtime_env


def _resources(o: RayOptions) -> dict[str, float]:
    """Ray resources one point asks for (what a node must offer)."""
    asked = {"CPU": float(o.num_cpus), "GPU": float(o.num_gpus)}
    asked = {k: v for k, v in asked.items() if v > 0}
    if o.memory_gb is not None:
        asked["memory"] = o.memory_gb * 2**30
    for key, value in (o.resources or {}).items():
        asked[str(key)] = float(value)
    if o.accelerator_type:
        asked[f"accelerator_type:{o.accelerator_type}"] = 0.001
    return asked


def _asked(o: RayOptions) -> str:
    parts = [f"{o.num_cpus:g} CPU{'s' if o.num_cpus != 1 else ''}",
             f"{o.num_gpus:g} GPU{'s' if o.num_gpus != 1 else ''}"]
    if o.memory_gb is not None:
        parts.append(f"{o.memory_gb:g} GB memory")
    parts += [f"{v:g} {k}" for k, v in (o.resources or {}).items()]
    if o.accelerator_type:
        parts.append(f"accelerator {o.accelerator_type}")
    return ", ".join(parts)


def _check_amount(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value >= 0):
        raise SamatError(f"{key}: expected a number >= 0, got {value!r}")
    if value > 1 and not float(value).is_integer():
        raise SamatError(f"{key}: Ray takes fractions only below 1, got {value}")


def _check_env(key: str, env: Any) -> None:
    if env is None:
        return
    if not isinstance(env, dict):
        raise SamatError(f"{key}: expected a mapping of NAME: value, got {env!r}")
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise SamatError(f"{key}: {name!r} is not an environment variable name")
        if name in NOT_PROPAGATED:
            raise SamatError(f"{key}.{name}: set by samat itself; remove it")
        if value is None or isinstance(value, dict | list):
            raise SamatError(f"{key}.{name}: expected a string or number, got {value!r}")


def _strings(env: Any) -> dict[str, str]:
    return {str(k): (str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in (env or {}).items()}


def _task_id(ref: Any) -> str:
    """The Ray task id of ``ref``'s task (hex), or "" where Ray does not tell (Ray Client)."""
    try:
        return str(ref.task_id().hex())
    except Exception:  # noqa: BLE001
        return ""



# -- the driver's signals ----------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """In the main thread, SIGTERM stops the driver as Ctrl-C does: the tasks are cancelled
    (they checkpoint) and a local Ray is shut down, instead of dying at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:  # a handler installed outside Python reads as None: the default then
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)

