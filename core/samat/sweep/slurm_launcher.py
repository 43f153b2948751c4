"""The ``slurm`` launcher: a sweep's unfinished points as ONE Slurm job array, submitted through
submitit (``pip install 'samat[slurm]'``); each array element trains one point with
:func:`samat.sweep.point.run_point` under the point's lock, so Slurm arrays, local sweeps and
Ray tasks on one output directory train every point once.

Submission: the array is submitted held (``--hold``), every point's launch record
(``point.json``) gets ``state: submitted`` and its job id (``<array>_<element>``), then the array
is released — a record never lags behind its job. Points whose recorded job is still queued or
running are not submitted again. submitit's scripts and logs go to ``<sweep>/.submitit/<job>/``.

In an element (:func:`run_element`): Slurm's time-limit warning (``--signal=USR2@signal_delay_s``)
and SIGTERM (preemption, ``scontrol requeue``, ``scancel``) make training checkpoint at its next
step and stop (:mod:`samat.interrupts`, replacing submitit's handlers, which would requeue and
exit mid-step). After a time-limit warning the element requeues itself (``scontrol requeue``), at
most ``max_requeues`` times per submission, after which the point is recorded failed; after
SIGTERM it just exits (Slurm requeues a preempted or requeued job; a cancelled one is gone). The
element exits without a result either way, and the rerun resumes from the checkpoint. A point
another live process holds ("running elsewhere") is left to it: the element ends successfully
and records nothing. A point whose job left the queue without a result (cancelled, killed, out
of memory, node failure) is recorded failed by :meth:`SlurmLauncher.job_states`, which
``samat sweep --wait`` calls every few seconds (``--status`` shows it), so a waiting sweep never
waits for it forever.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samat import interrupts, results
from samat.errors import DIVERGED_EXIT, STOPPED_EXIT, USAGE_EXIT, SamatError
from samat.sweep.grid import Sweep, read_record, sweep_from_manifest, write_record
from samat.sweep.launcher import Launcher
from samat.sweep.point import SKIPPED, run_point

log = logging.getLogger("samat")

SUBMITIT_DIR = ".submitit"
"""Under the sweep directory: submitit's sbatch scripts, pickles and per-job logs."""
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
         "OUT_OF_MEMORY", "PREEMPTED", "SPECIAL_EXIT", "TIMEOUT"}
"""squeue states of a job that will not run again (anything else may still run or requeue)."""
CONFIRM_S = 3.0
"""A job must look ended this long before its point is recorded failed (passing states)."""
MANAGED = {"array", "error", "hold", "job-name", "open-mode", "output", "signal"}
"""sbatch options the launcher sets itself; ``slurm_additional`` may not override them."""
NAMED = {"partition": "partition", "gpus-per-node": "gpus_per_point",
         "cpus-per-task": "cpus_per_point", "mem": "mem_gb", "time": "time_min",
         "account": "account", "qos": "qos"}
"""sbatch options that have their own ``sweep.launcher`` key."""
_EXIT = {"done": 0, "running elsewhere": 0, "diverged": DIVERGED_EXIT, "failed": USAGE_EXIT,
         "stopped": STOPPED_EXIT}


@dataclass
class SlurmOptions:
    """``sweep.launcher`` parameters of the Slurm launcher (docs/cluster.md)."""

    partition: str | None = None  # default: the cluster's default partition
    gpus_per_point: int = 1  # --gpus-per-node; 0 for CPU-only points
    cpus_per_point: int | None = None  # --cpus-per-task (default: the cluster's, usually 1)
    mem_gb: float | None = None  # --mem (default: the cluster's)
    time_min: int | None = None  # --time, the per-point time limit (default: the partition's)
    account: str | None = None
    qos: str | None = None
    array_parallelism: int | None = None  # at most this many elements at once (%N)
    setup: list[str] = field(default_factory=list)  # shell lines run before the point
    signal_delay_s: int = 120  # time-limit warning this long before the limit
    max_requeues: int = 3  # time-limit requeues per point and submission
    slurm_additional: Any = None  # {option: value} for sbatch, e.g. {constraint: a100}


class SlurmLauncher(Launcher):
    """One job array through submitit (see the module docstring)."""

    name = "slurm"
    Options = SlurmOptions
    blocking = False

    @classmethod
    def check(cls, options: SlurmOptions) -> None:
        o = options
        for key in ("partition", "account", "qos"):
            value = getattr(o, key)
            if value is not None and (not value.strip() or any(c.isspace() for c in value)):
                raise SamatError(f"sweep.launcher.{key}: expected a {key} name, got {value!r}")
        for key, value, least in (("gpus_per_point", o.gpus_per_point, 0),
                                  ("cpus_per_point", o.cpus_per_point, 1),
                                  ("time_min", o.time_min, 1),
                                  ("array_parallelism", o.array_parallelism, 1),
                                  ("signal_delay_s", o.signal_delay_s, 0),
                                  ("max_requeues", o.max_requeues, 0)):
            if value is not None and value < least:
                raise SamatError(f"sweep.launcher.{key}: must be >= {least}, got {value}")
        if o.mem_gb is not None and not o.mem_gb > 0:
            raise SamatError(f"sweep.launcher.mem_gb: must be > 0, got {o.mem_gb}")
        if o.time_min is not None and o.signal_delay_s >= 60 * o.time_min:
            raise SamatError(f"sweep.launcher.signal_delay_s: {o.signal_delay_s} s is not shorter "
                             f"than the time limit (time_min={o.time_min}: {60 * o.time_min} s)")
        for i, line in enumerate(o.setup):
            if "\n" in line:
                raise SamatError(f"sweep.launcher.setup.{i}: one shell line per entry, got "
                                 f"{line!r}")
        extra = o.slurm_additional
        if extra is None:
            return
        if not isinstance(extra, dict):
            raise SamatError("sweep.launcher.slurm_additional: expected a mapping of sbatch "
                             f"options such as {{constraint: a100}}, got {extra!r}")
        for key, value in extra.items():
            flag = str(key).replace("_", "-")
            if flag in MANAGED:
                raise SamatError(f"sweep.launcher.slurm_additional.{key}: set by the launcher "
                                 "(see docs/cluster.md); remove it")
            if flag in NAMED:
                raise SamatError(f"sweep.launcher.slurm_additional.{key}: use "
                                 f"sweep.launcher.{NAMED[flag]} instead")
            if isinstance(value, dict | list) or value is None:
                raise SamatError(f"sweep.launcher.slurm_additional.{key}: expected a string, "
                                 f"number or true, got {value!r}")

    def parameters(self, count: int) -> dict[str, Any]:
        """submitit ``SlurmExecutor.update_parameters`` arguments for an array of ``count``."""
        o = self.options
        params: dict[str, Any] = {
            "job_name": f"samat-{sweep_name(self.sweep)}", "signal_delay_s": o.signal_delay_s,
            "array_parallelism": o.array_parallelism or count,
            "partition": o.partition, "account": o.account, "qos": o.qos,
            "gpus_per_node": o.gpus_per_point or None, "cpus_per_task": o.cpus_per_point,
            "mem": _mem(o.mem_gb) if o.mem_gb is not None else None,
            "additional_parameters": {"requeue": True, **(o.slurm_additional or {}),
                                      "hold": True},
        }
        setup = list(o.setup)
        if o.cpus_per_point:  # Slurm 22.05's srun no longer inherits sbatch's --cpus-per-task
            setup.insert(0, "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK")
        if setup:
            params["setup"] = setup
        # None: no --time (the partition's default) instead of submitit's 5 minutes, and none
        # of submitit's --wckey (rejected where wckeys are enforced)
        return {**{k: v for k, v in params.items() if v is not None}, "time": o.time_min,
                "wckey": None}

    def sbatch_flags(self, count: int) -> list[str]:
        """The sbatch options the array gets (as ``--dry-run`` shows them)."""
        o, params = self.options, self.parameters(count)
        flags = [f"--array=0-{count - 1}%{params['array_parallelism']}"] if count > 1 else []
        flags.append(f"--job-name={params['job_name']}")
        for key in ("partition", "account", "qos", "gpus_per_node", "cpus_per_task", "mem",
                    "time"):
            if params.get(key) is not None:
                flags.append(f"--{key.replace('_', '-')}={params[key]}")
        flags.append(f"--signal={_warning_name()}@{o.signal_delay_s}")
        for key, value in params["additional_parameters"].items():
            if key != "hold":
                flag = f"--{str(key).replace('_', '-')}"
                flags.append(flag if value is True else f"{flag}={value}")
        return flags

    def plan(self, todo: list[int]) -> list[str]:
        if not todo:
            return ["slurm: nothing to submit (every point is done or diverged)"]
        o, n = self.options, len(todo)
        at_once = min(n, o.array_parallelism or n)
        what = [f"{o.gpus_per_point} GPU{'s' if o.gpus_per_point != 1 else ''}"]
        if o.cpus_per_point:
            what.append(f"{o.cpus_per_point} CPU{'s' if o.cpus_per_point != 1 else ''}")
        if o.mem_gb is not None:
            what.append(f"{o.mem_gb:g} GB")
        where = f" on partition {o.partition}" if o.partition else ""
        shape = f"one array{where} (at most {at_once} at once)" if n > 1 else f"one job{where}"
        head = f"slurm: {n} point(s) as {shape}, {', '.join(what)}"
        if o.time_min is None:
            cost = (", time limit: the partition's default each (set sweep.launcher.time_min "
                    "for the cost)")
        else:
            per = o.gpus_per_point or o.cpus_per_point or 1
            unit = "GPU" if o.gpus_per_point else "CPU"
            hours = n * per * o.time_min / 60
            cost = (f", time limit {_duration(o.time_min)} each: at most {hours:,.4g} "
                    f"{unit}-hours")
            if o.max_requeues:
                cost += (f" ({hours * (1 + o.max_requeues):,.4g} if every point used its "
                         f"{o.max_requeues} time-limit requeue(s))")
        lines = [head + cost, "sbatch " + " ".join(self.sbatch_flags(n))]
        if o.setup:
            lines.append("setup: " + "; ".join(o.setup))
        return lines

    def launch(self, todo: list[int]) -> None:
        queued = self._queued(todo)
        todo = [i for i in todo if i not in queued]
        if not todo:
            return
        submitit = _submitit()
        root = self.root.resolve()
        for index in todo:
            results.make_dirs(root / self.sweep.points[index].name, "--output")
        try:
            executor = submitit.SlurmExecutor(folder=root / SUBMITIT_DIR / "%j",
                                              max_num_timeout=self.options.max_requeues)
            executor.update_parameters(**self.parameters(len(todo)))
        except RuntimeError as exc:  # no srun on this machine
            raise SamatError(f"slurm: {exc} (submit from a Slurm login node; for a local test "
                             "cluster see scripts/slurm_up.sh)") from None
        except ValueError as exc:
            raise SamatError(f"sweep.launcher: {str(exc).splitlines()[0]}") from None
        n = len(todo)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's stderr
                jobs = executor.map_array(run_element, [str(root)] * n, todo,
                                          [self.options.max_requeues] * n)
        except submitit.core.utils.FailedJobError as exc:
            why = " ".join(str(exc).split()) or "no message"
            raise SamatError(f"slurm: sbatch refused the array: {why}") from None
        array = jobs[0].job_id.split("_")[0]
        try:
            for job, index in zip(jobs, todo, strict=True):
                write_record(root / self.sweep.points[index].name, state="submitted",
                             launcher="slurm", job_id=job.job_id, submitted=time.time(),
                             host=None, pid=None, started=None, ended=None, error=None,
                             time_limits=0)
            _scontrol("release", array)
        except BaseException:
            subprocess.run(["scancel", array], capture_output=True, timeout=60)
            raise
        self.submitted.update({i: job.job_id for job, i in zip(jobs, todo, strict=True)})
        log.info("submitted %d point(s) to Slurm as job %s (logs: %s)", n,
                 f"array {array}" if n > 1 else array, root / SUBMITIT_DIR)

    def __init__(self, sweep: Sweep, root: Path, options: SlurmOptions) -> None:
        super().__init__(sweep, root, options)
        self.submitted: dict[int, str] = {}
        self._ended_since: dict[str, float] = {}  # job id -> when squeue first said it ended

    def job_states(self) -> dict[int, str]:
        """squeue's word on each point's recorded job (``slurm job 12_3: pending
        (Priority)``). A point whose job has ended without a result — seen so on two calls at
        least :data:`CONFIRM_S` apart, in case a state is passing — is recorded failed."""
        alive, ended = self._poll()
        now = time.monotonic()
        for index, (job, state) in ended.items():
            first = self._ended_since.setdefault(job, now)
            if not (now - first >= CONFIRM_S and self._ended(index, job, state)):
                alive[index] = (f"slurm job {job}: {state.lower() or 'gone'} without a result "
                                "(re-run the sweep to retry it)")
        return alive

    def _poll(self) -> tuple[dict[int, str], dict[int, tuple[str, str]]]:
        """Points whose recorded Slurm job is queued or running (index -> what squeue says)
        and those whose job has ended (index -> (job id, its last state or "")); nothing
        when Slurm does not answer."""
        recorded = {}
        for index, point in enumerate(self.sweep.points):
            record = read_record(self.root / point.name)
            if record.get("launcher") == "slurm" and record.get("job_id"):
                recorded[index] = str(record["job_id"])
        if not recorded:
            return {}, {}
        queue = squeue(sorted({job.split("_")[0] for job in recorded.values()}))
        if queue is None:  # say nothing rather than guess
            return {}, {}
        alive, ended = {}, {}
        for index, job in recorded.items():
            state, node, reason = queue.get(job, ("", "", ""))
            if state and state not in ENDED:
                where = f" on {node}" if node and state != "PENDING" else ""
                why = f" ({reason})" if reason and reason != "None" else ""
                alive[index] = f"slurm job {job}: {state.lower()}{where}{why}"
            else:
                ended[index] = (job, state)
        return alive, ended

    def _ended(self, index: int, job: str, state: str) -> bool:
        """Record point ``index`` failed if its job ``job`` ended (as squeue said before we
        look at the point) and left no result, so that nothing else will run it; whether it
        did."""
        point = self.sweep.points[index]
        path = self.root / point.name
        if point.status(self.root) in (*SKIPPED, "running", "failed"):
            return False
        record = read_record(path)
        if record.get("job_id") != job or record.get("state") not in (
                "submitted", "running", "stopped"):
            return False
        how = state.lower() if state else "no longer in the queue"
        error = (f"Slurm job {job} ended without a result ({how}; its log: "
                 f"{self.root / SUBMITIT_DIR / job}); re-run the sweep to retry it")
        write_record(path, state="failed", ended=time.time(), error=error)
        log.error("[%d/%d] %s: %s", index + 1, len(self.sweep.points), point.name, error)
        return True

    def _queued(self, todo: list[int]) -> set[int]:
        """Points of ``todo`` whose recorded Slurm job is still queued or running."""
        states = self._poll()[0]
        for index in sorted(states):
            if index in todo:
                log.info("[%d/%d] %s: %s; not submitted again", index + 1,
                         len(self.sweep.points), self.sweep.points[index].name, states[index])
        return set(states) & set(todo)


def run_element(root: str, index: int, max_requeues: int) -> str:
    """One array element (runs on a compute node): train point ``index`` of the sweep in
    ``root`` until done, diverged or failed, stopping at a step boundary on Slurm's warning
    signals (see the module docstring). Returns ``done``/``running elsewhere``; exits with
    ``samat sweep --point``'s codes otherwise, so that no result is recorded."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("samat").addHandler(handler)
    logging.getLogger("samat").setLevel(logging.INFO)
    base = Path(root)
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    job = {"launcher": "slurm", "job_id": element_job_id(),
           "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "restart_count": restarts}
    with interrupts.stop_on({_warning_signal(): "time limit", signal.SIGTERM: "preempted"}):
        sweep = sweep_from_manifest(base)
        outcome = run_point(sweep, base, index, job=job)
        reason = interrupts.stop_requested()
    if outcome == "running elsewhere":
        log.info("point %d is trained by another process; this element has nothing to do",
                 index)
    if outcome == "stopped" and reason == "time limit":
        _requeue_after_time_limit(base / sweep.points[index].name, max_requeues)
    if _EXIT[outcome]:
        sys.exit(_EXIT[outcome])
    return outcome


def _requeue_after_time_limit(path: Path, max_requeues: int) -> None:
    """Requeue this element (its checkpoint is written), unless it has been requeued after
    its time limit ``max_requeues`` times since it was submitted: then record it failed."""
    used = int(read_record(path).get("time_limits") or 0)
    if used >= max_requeues:
        write_record(path, state="failed", error=(
            f"reached its time limit {used + 1} time(s) (sweep.launcher.max_requeues="
            f"{max_requeues}); re-run the sweep to continue from its checkpoint, or raise "
            "sweep.launcher.time_min"))
        return
    write_record(path, time_limits=used + 1)
    # logged first: once the job is requeued, srun stops forwarding this process's output
    log.info("requeueing after the time limit (%d of at most %d)", used + 1, max_requeues)
    try:
        if not os.environ.get("SLURM_JOB_ID"):
            raise SamatError("not in a Slurm job (no SLURM_JOB_ID): cannot requeue")
        # the requeue SIGTERMs every process of the job, scontrol too: it must not die of it
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:  # <array>_<task>: an array's last element has the array's id as SLURM_JOB_ID,
            _scontrol("requeue", element_job_id())  # and requeueing that id requeues them all
        finally:
            signal.signal(signal.SIGTERM, previous)
    except SamatError as exc:
        log.error("%s", exc)
        write_record(path, state="failed", error=f"{exc}; re-run the sweep to continue from "
                     "its checkpoint")


def squeue(arrays: list[str]) -> dict[str, tuple[str, str, str]] | None:
    """``{job id: (state, node, reason)}`` of every element of these jobs that Slurm still
    knows (ended ones for ``MinJobAge`` seconds); None if squeue does not answer."""
    try:
        done = subprocess.run(
            ["squeue", "--noheader", "--array", "--states=all", f"--jobs={','.join(arrays)}",
             "--format=%i|%T|%N|%r"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # none of them is known any more
            return {}
        return None
    out = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            out[parts[0]] = (parts[1].split()[0] if parts[1] else "", parts[2], parts[3])
    return out


def element_job_id() -> str:
    """This job's id as Slurm and submitit name it: ``<array>_<element>``, or the plain id."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    return os.environ.get("SLURM_JOB_ID", "")


def sweep_name(sweep: Sweep) -> str:
    """The recipe's name (the job name's suffix)."""
    return str(sweep.base.get("name") or sweep.recipe_path.stem)


def _submitit() -> Any:
    try:
        import submitit
        import submitit.core.utils  # noqa: F401  (FailedJobError)
    except ImportError:
        raise SamatError("the slurm launcher needs submitit: pip install 'samat[slurm]'"
                         ) from None
    return submitit


def _scontrol(action: str, job: str) -> None:
    try:
        done = subprocess.run(["scontrol", action, job], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SamatError(f"slurm: scontrol {action} {job}: {exc}") from None
    if done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split())
        raise SamatError(f"slurm: scontrol {action} {job} failed: {why}")


def _warning_name() -> str:
    """The time-limit warning signal submitit asks for (USR2 unless SUBMITIT_PREEMPT_SIGNAL)."""
    return os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")


def _warning_signal() -> signal.Signals:
    try:
        return signal.Signals[f"SIG{_warning_name()}"]
    except KeyError:
        raise SamatError(f"SUBMITIT_PREEMPT_SIGNAL={_warning_name()!r}: not a signal name "
                         "(e.g. USR2)") from None


def _mem(gb: float) -> str:
    return f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"


def _duration(minutes: int) -> str:
    return f"{minutes} min" if minutes < 60 else f"{minutes / 60:g} h"
