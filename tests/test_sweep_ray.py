"""The ray launcher on a real Ray runtime on this machine, on 127.0.0.1 only: a sweep of the
fixture task on a local Ray equal to the local launcher's; on a ``ray start --head`` a task whose
worker is killed (retried, resumed from its checkpoint) and points that fail while the others
finish; Ctrl-C; and, without Ray, its options, address resolution and lock take-over."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import one_thread
from run_fixtures import without_wall_clock

from samat import results, testing
from samat.errors import SamatError
from samat.locking import LOCK_NAME, RunLock
from samat.sweep import load_sweep, make_launcher, run_sweep
from samat.sweep.grid import read_record, write_record
from samat.sweep.ray_address import Target, check_reachable, is_loopback, target
from samat.sweep.ray_launcher import RayOptions, task_runtime_env
from samat.sweep.ray_task import take_lock

RAY = shutil.which("ray", path=str(Path(sys.executable).parent))
needs_ray = pytest.mark.skipif(RAY is None,
                               reason="Ray is not installed (pip install 'samat[ray]')")

BASE = {
    "name": "ray_sweep", "seed": 0, "device": "cpu",
    "task": {"name": "fixture", "n_train": 2048, "n_test": 128},
    "train": {"epochs": 60, "batch_size": 64, "optimizer": {"name": "sgd", "lr": 0.05}},
    "eval": {"batch_size": 128, "attacks": [{"name": "fgsm", "eps": 0.1, "label": "fgsm"}]},
}
"""Long enough (a few seconds per point) to kill a point's worker after its first checkpoint."""
SEEDS = [0, 1, 2]
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                 "RAY_USAGE_STATS_ENABLED": "0"}


def _recipe(directory: Path, sweep: dict | None = None, **changes) -> Path:
    data = {**BASE, **changes, "sweep": sweep or {"grid": {"seed": SEEDS}}}
    path = directory / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _metrics(root: Path, name: str) -> dict:
    """A point's metrics.json without wall-clock fields and the recipe's path."""
    metrics = json.loads((root / name / results.METRICS).read_text())
    metrics["recipe"].pop("path")
    return without_wall_clock(metrics)


# -- a Ray runtime for the module: `ray start --head` on 127.0.0.1 --------------------------------


@pytest.fixture(scope="module")
def ray_dirs() -> Iterator[Path]:
    """A short temporary directory (Ray's socket paths must stay short) for HOME and
    RAY_TMPDIR, so that nothing is written to the real home or /tmp/ray."""
    base = Path(tempfile.mkdtemp(prefix="samat-ray-"))
    for sub in ("home", "head", "own"):
        (base / sub).mkdir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_env(ray_dirs: Path) -> dict[str, str]:
    """Environment of every Ray process here: loopback only, no token, a private HOME and
    RAY_TMPDIR, and task ``fixture`` known (:func:`samat.testing.fixture_env`)."""
    env = testing.fixture_env(ray_dirs / "site", {k: v for k, v in os.environ.items()
                                                  if k != "RAY_ADDRESS"})
    return {**env, **LOOPBACK_ONLY, "HOME": str(ray_dirs / "home"),
            "RAY_TMPDIR": str(ray_dirs / "head"), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def ray_head(ray_env: dict[str, str]) -> Iterator[dict]:
    """``ray start --head --block`` on 127.0.0.1 (2 CPUs): its address and process. Stopped by
    SIGTERM to that process, which stops its own Ray processes only (``ray stop`` would stop
    every Ray on the machine)."""
    if RAY is None:
        pytest.skip("Ray is not installed (pip install 'samat[ray]')")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--port=0", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address_file = Path(ray_env["RAY_TMPDIR"]) / "ray" / "ray_current_cluster"
    deadline = time.monotonic() + 90
    while not (address_file.is_file() and address_file.read_text().strip()):
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            pytest.fail(f"ray start --head failed: {head.communicate()[0][-2000:]}")
        time.sleep(0.2)
    address = address_file.read_text().strip()
    try:
        yield {"address": address, "process": head, "listening": _listening(head.pid)}
    finally:
        tree = _tree(head.pid)
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        left = _still_alive(tree)
        assert not left, f"ray start left processes running: {left}"


def _tree(pid: int) -> set[int]:
    """``pid`` and its descendants."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _still_alive(pids: set[int], within_s: float = 30.0) -> list[int]:
    """Those of ``pids`` still alive after up to ``within_s`` seconds (Ray's processes exit
    within a second or two once it is shut down; more on a loaded machine)."""
    deadline = time.monotonic() + within_s
    while True:
        left = sorted(pid for pid in pids if _alive(pid))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket that ``pid`` or its descendants listen on."""
    inodes = set()
    for member in _tree(pid):
        try:
            fds = os.listdir(f"/proc/{member}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{member}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or int(fields[9]) not in inodes:  # 0A: LISTEN
                continue
            raw_ip, port = fields[1].split(":")
            raw = bytes.fromhex(raw_ip)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


def _on_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _default_sigint() -> None:
    """Ctrl-C as a terminal delivers it: pytest started in the background of a
    non-interactive shell (``make test &``) ignores SIGINT, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sweep(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """``samat sweep ARGS`` in a subprocess."""
    return subprocess.Popen([sys.executable, "-m", "samat", "sweep", *args], cwd=cwd,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _lock_env() -> dict[str, str]:
    """The short lock times of the test (conftest) for the sweep and, through it, the tasks."""
    return {k: v for k, v in os.environ.items() if k.startswith("SAMAT_LOCK_")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The sweep's metrics with the local launcher, in this process (one torch thread)."""
    directory = tmp_path_factory.mktemp("reference")
    with one_thread(), testing.fixture_plugin():
        sweep = load_sweep(_recipe(directory))
        run_sweep(sweep, directory / "out")
    return {p.name: _metrics(directory / "out", p.name) for p in sweep.points}


# -- real Ray runs --------------------------------------------------------------------------------


@needs_ray
def test_a_sweep_on_a_local_ray_equals_the_local_launcher(
        tmp_path: Path, root: Path, ray_env: dict[str, str], ray_dirs: Path,
        reference: dict[str, dict]) -> None:
    recipe = _recipe(tmp_path)
    out = tmp_path / "out"
    # no sweep.launcher.address and no running Ray in this RAY_TMPDIR: a local Ray for the sweep
    env = {**ray_env, **_lock_env(), "RAY_TMPDIR": str(ray_dirs / "own")}
    proc = _sweep([str(recipe), "sweep.launcher.num_cpus=0.5", "--launcher", "ray", "--output",
                   str(out)], env, root)  # half a CPU each: the three points at once
    seen: set[tuple[str, int]] = set()
    started: set[int] = set()
    while proc.poll() is None:  # the sweep's Ray: its processes and what they listen on
        started |= _tree(proc.pid)
        seen |= _listening(proc.pid)
        time.sleep(0.5)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    print(stderr)
    assert "ray: started a local Ray for this sweep at 127.0.0.1:" in stderr
    assert len(seen) >= 3, seen  # at least the driver, GCS and raylet
    assert all(_on_loopback(ip) for ip, _ in seen), f"Ray listens beyond loopback: {seen}"
    assert "SGD" in stdout and "3 (0, 1, 2)" in stdout
    task_ids = set()
    for name, expected in reference.items():
        record = read_record(out / name)
        assert record["state"] == "done" and record["launcher"] == "ray"
        assert len(record["job_id"]) == 48 and record["ray_attempt"] == 1
        assert f"{name}: finished (Ray task {record['job_id']}, attempt 1" in stderr
        task_ids.add(record["job_id"])
        assert _metrics(out, name) == expected, name
        assert not (out / name / LOCK_NAME).exists()
    assert len(task_ids) == len(reference)
    assert len(started) >= 4 and not _still_alive(started), "the local Ray outlived the sweep"


@needs_ray
def test_a_task_lost_with_its_worker_is_retried_and_resumes_from_its_checkpoint(
        tmp_path: Path, root: Path, ray_env: dict[str, str], ray_head: dict,
        reference: dict[str, dict]) -> None:
    recipe = _recipe(tmp_path)
    out = tmp_path / "out"
    # a stale time longer than a retried worker takes to start: the retry usually finds the
    # lost attempt's lock fresh and waits for it to expire (sweep_output.txt says so)
    env = {**ray_env, **_lock_env(), "SAMAT_LOCK_STALE_AFTER_S": "8"}
    proc = _sweep([str(recipe), f"sweep.launcher.address={ray_head['address']}",
                   "sweep.launcher.num_cpus=0.5", "--launcher", "ray", "--output", str(out)],
                  env, root)
    victim = out / "seed=1"
    deadline = time.monotonic() + 120
    while True:
        record = read_record(victim)
        if (victim / results.CHECKPOINT).is_file() and record.get("state") == "running":
            break
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    assert not (victim / results.METRICS).exists()  # killed mid-training
    os.kill(record["pid"], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    print(stderr)
    assert proc.returncode == 0, stderr
    assert f"connected to the Ray cluster at {ray_head['address']}" in stderr
    after = read_record(victim)
    assert after["state"] == "done" and after["job_id"] == record["job_id"]
    assert after["ray_attempt"] == 2 and after["pid"] != record["pid"]
    assert f"seed=1: finished (Ray task {record['job_id']}, attempt 2" in stderr
    assert "resumed" in (victim / results.LOG).read_text()
    output = (victim / "sweep_output.txt").read_text()
    assert "attempt 1" in output and "attempt 2" in output and "resuming" in output
    for name, expected in reference.items():
        assert _metrics(out, name) == expected, name
        assert (name == "seed=1") == ("resumed" in (out / name / results.LOG).read_text())


@needs_ray
def test_a_running_ray_start_is_used_and_failed_points_are_recorded_while_the_others_finish(
        tmp_path: Path, root: Path, ray_env: dict[str, str], ray_head: dict) -> None:
    listening = ray_head["listening"]
    assert len(listening) >= 2 and all(_on_loopback(ip) for ip, _ in listening), listening
    # n_train=65: a last batch of one example, which BatchNorm refuses at run time only;
    # n_train=4096: its worker is killed and max_retries=0 leaves it lost
    recipe = _recipe(tmp_path, {"grid": {"task.n_train": [65, 256, 4096]}})
    out = tmp_path / "out"
    # no sweep.launcher.address: the `ray start` of this RAY_TMPDIR, as it is running
    proc = _sweep([str(recipe), "sweep.launcher.max_retries=0", "sweep.launcher.num_cpus=0.5",
                   "--launcher", "ray", "--output", str(out)], {**ray_env, **_lock_env()}, root)
    victim = out / "n_train=4096"
    deadline = time.monotonic() + 120
    while not ((victim / results.CHECKPOINT).is_file()
               and read_record(victim).get("state") == "running"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    os.kill(read_record(victim)["pid"], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    print(stderr)
    assert proc.returncode == 2, stderr
    assert (f"ray: connected to the running Ray at {ray_head['address']} (ray start) "
            "(1 node(s), 2 CPUs, 0 GPUs)") in stderr
    assert stderr.strip().splitlines()[-1] == (
        "samat: error: sweep: 2 point(s) failed, first n_train=65: ValueError: Expected more "
        "than 1 value per channel when training, got input size torch.Size([1, 32]); re-run "
        "the sweep to retry them")
    raised = read_record(out / "n_train=65")
    assert raised["state"] == "failed" and raised["launcher"] == "ray" and raised["job_id"]
    assert raised["error"].startswith("ValueError: Expected more than 1 value")
    lost = read_record(victim)
    assert lost["state"] == "failed" and lost["error"] == (
        f"its Ray task {lost['job_id']} was lost with its worker or node (WorkerCrashedError) "
        "1 time(s), sweep.launcher.max_retries=0; re-run the sweep to resume it from its "
        "checkpoint")
    assert read_record(out / "n_train=256")["state"] == "done"
    assert (out / "n_train=256" / results.METRICS).is_file()
    # the cluster is not the sweep's to stop
    assert ray_head["process"].poll() is None
    host, _, port = ray_head["address"].rpartition(":")
    socket.create_connection((host, int(port)), timeout=5).close()


@needs_ray
def test_ctrl_c_stops_the_tasks_at_a_checkpoint_and_shuts_the_local_ray_down(
        tmp_path: Path, root: Path, ray_env: dict[str, str], ray_dirs: Path) -> None:
    recipe = _recipe(tmp_path, train={**BASE["train"], "epochs": 1000})
    out = tmp_path / "out"
    env = {**ray_env, **_lock_env(), "RAY_TMPDIR": str(ray_dirs / "own")}
    proc = _sweep([str(recipe), "--launcher", "ray", "--output", str(out)], env, root)
    running = [out / "seed=0", out / "seed=1"]  # 2 CPUs: seed=2 waits
    deadline = time.monotonic() + 120
    while not all((p / results.CHECKPOINT).is_file() and read_record(p).get("state")
                  == "running" for p in running):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    tree = _tree(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    print(stderr)
    assert proc.returncode == 130, stderr
    assert "ray: cancelling 3 task(s)" in stderr and "samat: interrupted" in stderr
    for path in running:
        record = read_record(path)
        assert record["state"] == "stopped" and "the Ray task was cancelled" in record["error"]
        assert (path / results.CHECKPOINT).is_file() and not (path / LOCK_NAME).exists()
        assert not (path / results.METRICS).exists()
    assert read_record(out / "seed=2")["state"] == "cancelled"
    assert not _still_alive(tree), "the local Ray outlived the sweep"


# -- without a Ray runtime ------------------------------------------------------------------------


def _launcher(tmp_path: Path, **settings):
    with testing.fixture_plugin():
        sweep = load_sweep(_recipe(tmp_path), build=False)
    sweep.launcher = {"name": "ray", **settings}
    return make_launcher(sweep, tmp_path / "out")


@pytest.mark.parametrize(("settings", "message"), [
    ({"num_cpus": -1}, "sweep.launcher.num_cpus: expected a number >= 0, got -1"),
    ({"num_gpus": 1.5}, "sweep.launcher.num_gpus: Ray takes fractions only below 1, got 1.5"),
    ({"num_cpus": 0}, "sweep.launcher.num_cpus: 0 with num_gpus 0 would run every point"),
    ({"max_retries": -1}, "sweep.launcher.max_retries: must be >= 0, got -1"),
    ({"max_parallel": 0}, "sweep.launcher.max_parallel: must be >= 1, got 0"),
    ({"memory_gb": 0}, "sweep.launcher.memory_gb: must be > 0, got 0"),
    ({"address": "a b"}, "sweep.launcher.address: expected local, auto, HOST:PORT"),
    ({"resources": {"GPU": 1}}, "sweep.launcher.resources.GPU: use sweep.launcher.num_gpus"),
    ({"resources": ["a"]}, "sweep.launcher.resources: expected a mapping"),
    ({"env": {"SAMAT_LOCK_TOKEN": "x"}}, "sweep.launcher.env.SAMAT_LOCK_TOKEN: set by samat"),
    ({"env": {"1X": "y"}}, "sweep.launcher.env: '1X' is not an environment variable name"),
    ({"runtime_env": {"env_vars": {"A": [1]}}},
     "sweep.launcher.runtime_env.env_vars.A: expected a string or number"),
    ({"namespace": ""}, "sweep.launcher.namespace: expected a name"),
    ({"partition": "gpu"}, "Unknown key 'sweep.launcher.partition'. Valid keys here: address"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, settings: dict, message: str) -> None:
    with pytest.raises(SamatError) as caught:
        _launcher(tmp_path, **settings)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_where_the_tasks_go(tmp_path: Path) -> None:
    env = {"RAY_TMPDIR": str(tmp_path)}
    assert target(None, env).local and target("local", {"RAY_ADDRESS": "10.0.0.1:6379"}).local
    assert target(None, {**env, "RAY_ADDRESS": "10.0.0.1:6379"}).address == "10.0.0.1:6379"
    assert not target("10.0.0.1:6379", env).loopback and target("localhost:1", env).loopback
    address_file = tmp_path / "ray" / "ray_current_cluster"
    address_file.parent.mkdir()
    with socket.socket() as server:  # a running `ray start`, as far as the probe can tell
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        address_file.write_text(address)
        found = target(None, env)
        assert (found.address, found.local, found.loopback) == (address, False, True)
    assert target(None, env).local  # the file outlived its Ray (ray stop): start a local one
    assert target("auto", env).address == "auto" and target("auto", env).loopback
    assert is_loopback("ray://[::1]:10001") and not is_loopback("ray://head:10001")


def test_an_address_where_nothing_answers_is_an_error_at_once(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {"RAY_TMPDIR": str(tmp_path), "RAY_ADDRESS": f"127.0.0.1:{port}"}
    with pytest.raises(SamatError, match=rf"^sweep.launcher.address: nothing answers at "
                       rf"127.0.0.1:{port} \(the Ray cluster at 127.0.0.1:{port} "
                       r"\(RAY_ADDRESS\)\): Connection refused; start the cluster"):
        check_reachable(target(None, env))
    check_reachable(target("local", env))  # nothing to reach


def test_the_tasks_get_the_drivers_pythonpath_and_samat_variables() -> None:
    options = RayOptions(env={"A": 1, "SAMAT_X": "mine"},
                         runtime_env={"pip": ["samat"], "env_vars": {"B": "2", "A": "0"}})
    driver = {"PYTHONPATH": "/site", "SAMAT_X": "driver", "SAMAT_LOCK_STALE_AFTER_S": "2",
              "SAMAT_LOCK_TOKEN": "t", "SAMAT_PARENT_PID": "1", "HOME": "/root"}
    assert task_runtime_env(options, driver) == {"pip": ["samat"], "env_vars": {
        "PYTHONPATH": "/site", "SAMAT_X": "mine", "SAMAT_LOCK_STALE_AFTER_S": "2",
        "B": "2", "A": "1"}}


def test_plan_says_where_and_what_each_point_gets(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "none"))
    lines = _launcher(tmp_path, num_cpus=2, max_retries=1, memory_gb=4).plan([0, 1, 2])
    assert lines[0] == ("ray: 3 point(s) as Ray tasks, each 2 CPUs, 0 GPUs, 4 GB memory; a task "
                        "lost with its worker or node is retried up to 1 time(s)")
    assert lines[1].startswith("ray: on a local Ray started for this sweep, 127.0.0.1 only")
    remote = _launcher(tmp_path, address="head:6379", num_gpus=1).plan([0])
    assert remote[1] == (f"ray: on the Ray cluster at head:6379; the sweep directory "
                         f"{(tmp_path / 'out').resolve()} must be at that path on every node")


class _Cluster:
    """What :meth:`RayLauncher._check_resources` asks of Ray: its nodes."""

    def __init__(self, *resources: dict) -> None:
        self.resources = resources

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": r} for r in self.resources]


def test_a_point_no_node_can_take(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    launcher = _launcher(tmp_path, num_gpus=1, memory_gb=8)
    local = Target("local", "a local Ray started for this sweep", True, True)
    with pytest.raises(SamatError) as caught:
        launcher._check_resources(_Cluster({"CPU": 2, "memory": 2**34}), local)
    assert str(caught.value) == (
        "sweep.launcher.num_gpus: each point asks for 1 CPU, 1 GPU, 8 GB memory but the "
        "largest node of a local Ray started for this sweep has 0 GPU")
    cluster = Target("head:6379", "the Ray cluster at head:6379", False, False)
    nodes = _Cluster({"CPU": 8, "GPU": 4, "memory": 2**32},
                     {"CPU": 2, "GPU": 1, "memory": 6 * 2**30})
    launcher._check_resources(nodes, cluster)  # a cluster: nodes may join, so only a warning
    assert "sweep.launcher.memory_gb: each point asks for 1 CPU, 1 GPU, 8 GB memory but the " \
        "largest node of the Ray cluster at head:6379 has 6 GB of memory; the points wait" \
        in caplog.text
    caplog.clear()
    launcher._check_resources(_Cluster({"CPU": 8, "memory": 2**34}, {"CPU": 1, "GPU": 1}), cluster)
    assert "sweep.launcher: each point asks for 1 CPU, 1 GPU, 8 GB memory but no node of the " \
        "Ray cluster at head:6379 has all of it" in caplog.text
    caplog.clear()
    launcher._check_resources(_Cluster({"CPU": 1, "GPU": 1, "memory": 2**34}), cluster)
    assert not caplog.text


def test_without_ray_the_launcher_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SamatError, match=r"^the ray launcher needs Ray: pip install "
                       r"'samat\[ray\]'$"):
        _launcher(tmp_path, address="local").launch([0])


def test_a_retry_waits_for_the_lock_of_its_lost_attempt_on_another_node(
        tmp_path: Path) -> None:
    path = tmp_path / "point"
    path.mkdir()
    lost = {"pid": 4242, "host": "another-node", "boot_id": "", "start_time": "",
            "token": "f" * 32, "started": time.time()}
    (path / LOCK_NAME).write_text(json.dumps(lost))
    write_record(path, launcher="ray", job_id="task-a", pid=4242, host="another-node",
                 state="running")
    lock = RunLock(path, heartbeat_s=0.2, stale_after_s=1.0)
    assert not take_lock(lock, path, "task-b", "[1/1] point")  # not ours: left to its holder
    start = time.monotonic()
    assert take_lock(lock, path, "task-a", "[1/1] point")  # our lost attempt: expires, taken
    assert 0.5 < time.monotonic() - start < 3
    assert json.loads((path / LOCK_NAME).read_text())["token"] == lock.token
    lock.release()
