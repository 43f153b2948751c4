"""``samat sweep``: a grid of ordinary runs, resumable, summarised next to its runs.

A recipe declares its sweep in a top-level ``sweep:`` block (``samat run`` ignores it)::

    sweep:
      grid:                                   # cartesian product of the values
        seed: [0, 1, 2]
        train.weight_perturbation.rho: [0.1, 0.2]
      cases:                                  # named alternatives, each crossed with the grid
        sgd: {}
        sam: {train.weight_perturbation: {name: sam, rho: 0.1}}

``samat sweep RECIPE key=v1,v2 ...`` adds (or replaces) grid axes from the command line; an
argument without a comma (or with a YAML list/mapping value) is an ordinary override applied to
every point. Each point is a run directory ``SWEEP_DIR/<case>/<axis=value_...>``. Re-running
the same sweep skips finished points and resumes an interrupted one from its checkpoint.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from samat import __version__, lifeline, results
from samat.errors import DIVERGED_EXIT, SamatError
from samat.factories import check_components
from samat.interfaces import Task
from samat.locking import LOCK_NAME, RunLock, lock_state
from samat.recipe import Recipe, load_yaml_text, parse_override, read_yaml, recipe_from_dict
from samat.run import prepare, run
from samat.train import Diverged

log = logging.getLogger("samat")

MANIFEST = results.SWEEP_MANIFEST
SWEEP_KEY = "sweep"


@dataclass
class Point:
    """One run of a sweep."""

    name: str  # directory relative to the sweep root, e.g. "sam/rho=0.1_seed=0"
    case: str | None
    values: dict[str, Any]  # grid axis -> value
    overrides: list[str]  # key=value strings that make this point from the base recipe

    def status(self, root: Path, ours: bool = False) -> str:
        """``done`` or ``diverged`` (metrics.json), ``running`` (its lock is held, unless
        ``ours``), ``partial`` (a checkpoint), ``stale`` (a run directory that never
        checkpointed) or ``pending``."""
        path = root / self.name
        try:
            status = results.run_status(results.read_metrics(path))
        except SamatError:
            status = None  # a half-written metrics file cannot exist (atomic); treat as absent
        if status is not None:
            return "done" if status == results.FINISHED else status
        if not ours and path.is_dir() and lock_state(path)[0] == "held":
            return "running"
        if (path / results.CHECKPOINT).is_file():
            return "partial"
        if results.is_run_dir(path):
            return "stale"
        return "pending"


@dataclass
class Sweep:
    """A base recipe, its grid axes and cases, and the points they make."""

    recipe_path: Path
    base: dict[str, Any]
    overrides: list[str]
    grid: dict[str, list[Any]]
    cases: dict[str, dict[str, Any]]
    points: list[Point] = field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        """What must match for a re-run to continue an existing sweep directory."""
        return json.loads(json.dumps(
            {"base": self.base, "overrides": self.overrides, "grid": self.grid,
             "cases": self.cases}, default=str))


def yaml_value(value: Any) -> str:
    """``value`` as the right-hand side of a ``key=value`` override."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return text.strip().removesuffix("\n...").strip()


def split_arguments(args: list[str]) -> tuple[dict[str, list[Any]], list[str]]:
    """Command-line ``key=v1,v2`` axes and plain ``key=value`` overrides."""
    axes: dict[str, list[Any]] = {}
    overrides: list[str] = []
    for text in args:
        parts, value = parse_override(text)
        raw = text.partition("=")[2].strip()
        if isinstance(value, str) and "," in raw and not raw.startswith(("[", "{")):
            items = [load_yaml_text(v) for v in raw.split(",")]
            if any(v is None for v in items):
                raise SamatError(f"sweep axis '{text}': empty value; write key=v1,v2,...")
            axes[".".join(parts)] = items
        else:
            overrides.append(text)
    return axes, overrides


def _check_grid(grid: Any, where: str) -> dict[str, list[Any]]:
    if grid is None:
        return {}
    if not isinstance(grid, dict):
        raise SamatError(f"{where}: expected a mapping of key.path: [values], got {grid!r}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SamatError(f"{where}.{key}: expected a non-empty list of values, got {values!r}")
        if key in ("output_dir", "name"):
            raise SamatError(f"{where}.{key}: a sweep sets {key} itself; remove this axis")
    return dict(grid)


def _check_cases(cases: Any, where: str) -> dict[str, dict[str, Any]]:
    if cases is None:
        return {}
    if not isinstance(cases, dict) or not cases:
        raise SamatError(f"{where}: expected a mapping of case name: {{key.path: value}}")
    for name, overrides in cases.items():
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise SamatError(f"{where}: case name {name!r} must be a plain directory name")
        if overrides is not None and not isinstance(overrides, dict):
            raise SamatError(f"{where}.{name}: expected a mapping of key.path: value")
    return {name: dict(overrides or {}) for name, overrides in cases.items()}


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Last path component of each key, the full key where two would collide."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def _dir_value(value: Any) -> str:
    if isinstance(value, dict):
        label = value.get("label") or "-".join(
            [str(value.get("name", ""))] + [f"{k}{_dir_value(v)}" for k, v in value.items()
                                            if k not in ("name", "label")])
        return str(label)
    if isinstance(value, list):
        return "-".join(_dir_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("/", "_").replace(" ", "")


def load_sweep(recipe_path: str | Path, args: list[str] = (), build: bool = True) -> Sweep:
    """Read ``recipe_path``'s ``sweep:`` block plus command-line axes/overrides, and check
    every point's recipe: names and keys, then (``build``) by building every point as
    ``samat run`` would. Nothing is written."""
    data = read_yaml(recipe_path)
    if not isinstance(data, dict):
        raise SamatError(f"{recipe_path}: expected a mapping of keys at the top level")
    data = copy.deepcopy(data)
    block = data.pop(SWEEP_KEY, None) or {}
    if not isinstance(block, dict):
        raise SamatError(f"{SWEEP_KEY}: expected a mapping with 'grid' and/or 'cases'")
    unknown = set(block) - {"grid", "cases"}
    if unknown:
        raise SamatError(f"Unknown key '{SWEEP_KEY}.{sorted(unknown)[0]}'. "
                         "Valid keys here: grid, cases")
    grid = _check_grid(block.get("grid"), f"{SWEEP_KEY}.grid")
    cases = _check_cases(block.get("cases"), f"{SWEEP_KEY}.cases")
    cli_axes, overrides = split_arguments(list(args))
    grid.update(_check_grid(cli_axes, "sweep axis"))
    if not grid and not cases:
        raise SamatError(
            f"{recipe_path}: nothing to sweep; add a 'sweep:' block with grid/cases to the "
            "recipe or pass axes such as seed=0,1,2"
        )
    sweep = Sweep(Path(recipe_path), data, overrides, grid, cases)
    short = _short_keys(list(grid))
    for case, combo in itertools.product(
        list(cases.items()) or [(None, {})], itertools.product(*grid.values())
    ):
        case_name, case_overrides = case
        values = dict(zip(grid, combo, strict=True))
        point_overrides = (
            [f"{k}={yaml_value(v)}" for k, v in case_overrides.items()]
            + [f"{k}={yaml_value(v)}" for k, v in values.items()]
        )
        leaf = "_".join(f"{short[k]}={_dir_value(v)}" for k, v in values.items())
        name = "/".join(p for p in (case_name, leaf) if p)
        sweep.points.append(Point(name, case_name, values, point_overrides))
    names = [p.name for p in sweep.points]
    if len(set(names)) != len(names):
        raise SamatError("sweep: two points map to the same directory; give distinct values")
    recipes = []
    for point in sweep.points:  # names and keys of every point first: fast
        try:
            recipes.append(point_recipe(sweep, point, Path(".")))
            check_components(recipes[-1])
        except SamatError as exc:
            raise SamatError(f"sweep point {point.name}: {exc}") from None
    if build:
        _build_all(sweep, recipes)
    return sweep


def _build_all(sweep: Sweep, recipes: list[Recipe]) -> None:
    """Build every point as ``samat run`` would (task, model, perturbations, attacks, trainer),
    so that a bad value fails before the first point trains; a task is built once per distinct
    task configuration."""
    tasks: dict[str, Task] = {}
    for point, recipe in zip(sweep.points, recipes, strict=True):
        key = json.dumps([recipe.task.as_dict(), recipe.seed, recipe.device], default=str)
        try:
            components, _ = prepare(recipe, task=tasks.get(key))
        except SamatError as exc:
            raise SamatError(f"sweep point {point.name}: {exc}") from None
        tasks[key] = components.task


def point_recipe(sweep: Sweep, point: Point, root: Path) -> Any:
    """The validated recipe of ``point``, writing to ``root/point.name``."""
    recipe = recipe_from_dict(
        sweep.base, [*sweep.overrides, *point.overrides, f"output_dir={root / point.name}"]
    )
    if not recipe.name:
        recipe.name = sweep.recipe_path.stem
    return recipe


def default_root(sweep: Sweep) -> Path:
    """``output_dir`` of the base recipe if set, else ``runs/<name>-sweep``."""
    recipe = recipe_from_dict(sweep.base, sweep.overrides)
    if recipe.output_dir:
        return Path(recipe.output_dir)
    return Path("runs") / f"{recipe.name or sweep.recipe_path.stem}-sweep"


def _manifest(sweep: Sweep, root: Path) -> dict[str, Any]:
    points = []
    for p in sweep.points:
        entry: dict[str, Any] = {"name": p.name, "case": p.case, "values": p.values,
                                 "overrides": p.overrides, "status": p.status(root)}
        metrics_path = root / p.name / results.METRICS
        if entry["status"] == "done":
            m = json.loads(metrics_path.read_text())
            entry.update({m["metric"]: m["natural"][m["metric"]],
                          "average_under_attack": m.get("average_under_attack")})
        points.append(entry)
    return {"recipe": str(sweep.recipe_path), "samat": __version__, **sweep.identity(),
            "points": points}


def _check_same_sweep(sweep: Sweep, root: Path) -> None:
    path = root / MANIFEST
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    current = sweep.identity()
    differs = [k for k in current if saved.get(k) != current[k]]
    if differs:
        raise SamatError(
            f"{root} holds a different sweep (differs in: {', '.join(differs)}); "
            "re-run with the same recipe and arguments to continue it, or pass another --output"
        )


def run_sweep(sweep: Sweep, root: Path, jobs: int = 1) -> list[dict[str, Any]]:
    """Run every unfinished point (``jobs`` at a time), then write the sweep summary.

    Each point is trained under its run directory's lock, so any number of sweeps (and cluster
    workers) sharing ``root`` train each point exactly once: a point another process holds is
    waited for, and taken over if that process dies. Returns the manifest's point entries;
    raises :class:`SamatError` naming the points that failed (the others still ran)."""
    if jobs < 1:
        raise SamatError(f"--jobs: must be >= 1, got {jobs}")
    _check_same_sweep(sweep, root)
    results.check_output_dir(root, "--output")
    results.make_dirs(root, "--output")
    results.write_json(root / MANIFEST, _manifest(sweep, root))
    queue = _Queue(sweep, root)
    try:
        if jobs == 1:
            _work(queue, lambda item: _run_in_process(sweep, item, root))
        else:
            env = {**os.environ, **lifeline.child_env()}
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
            with ThreadPoolExecutor(jobs) as pool:
                for future in [pool.submit(_work, queue, lambda item: _run_subprocess(
                        sweep, item, root, env)) for _ in range(jobs)]:
                    future.result()
    finally:
        results.write_json(root / MANIFEST, _manifest(sweep, root))
    write_summary(root)
    diverged = [p.name for p in sweep.points if p.status(root) == "diverged"]
    if diverged:
        log.warning("%d point(s) diverged (metrics.json status: diverged): %s", len(diverged),
                    ", ".join(diverged))
    if queue.failed:
        name, why = queue.failed[0]
        raise SamatError(f"sweep: {len(queue.failed)} point(s) failed, first {name}: {why}; "
                         "re-run the sweep to retry them")
    return _manifest(sweep, root)["points"]


@dataclass
class _Item:
    """A point this process now holds the lock of, and how to run it."""

    index: int
    point: Point
    lock: RunLock
    resume: bool

    def tag(self, total: int) -> str:
        return f"[{self.index}/{total}] {self.point.name}"


class _Queue:
    """Hands out the points still to train, each locked; waits for points that other
    processes are training and takes them over if those processes die."""

    POLL_S = 2.0

    def __init__(self, sweep: Sweep, root: Path) -> None:
        self.sweep, self.root = sweep, root
        self.handled: set[str] = set()
        self.failed: list[tuple[str, str]] = []
        self._mutex = threading.Lock()
        self._waiting_logged = False

    def next(self) -> _Item | None:
        """The next point to run (locked), or None when every point is done or failed."""
        while True:
            with self._mutex:
                item, busy = self._scan()
            if item is not None or not busy:
                return item
            if not self._waiting_logged:
                log.info("waiting for %d point(s) running in other processes: %s", len(busy),
                         ", ".join(busy))
                self._waiting_logged = True
            time.sleep(self.POLL_S)

    def finished(self, item: _Item, failure: str | None) -> None:
        item.lock.release()
        if failure is not None:
            with self._mutex:
                self.failed.append((item.point.name, failure))

    def _scan(self) -> tuple[_Item | None, list[str]]:
        busy = []
        total = len(self.sweep.points)
        for index, point in enumerate(self.sweep.points, 1):
            if point.name in self.handled:
                continue
            status = point.status(self.root)
            if status in ("done", "diverged"):
                self.handled.add(point.name)
                log.info("[%d/%d] %s: %s, skipped", index, total, point.name,
                         "finished" if status == "done" else "diverged")
                continue
            path = self.root / point.name
            results.make_dirs(path, "--output")
            lock = RunLock(path)
            if not lock.acquire():
                busy.append(point.name)
                continue
            status = point.status(self.root, ours=True)  # again: nobody else can change it now
            if status in ("done", "diverged"):
                lock.release()
                continue  # finished by another process meanwhile: reported on the next scan
            if status == "stale":  # stopped before its first checkpoint: nothing to keep
                _clear(path)
            self.handled.add(point.name)
            return _Item(index, point, lock, status == "partial"), busy
        return None, busy


def _clear(path: Path) -> None:
    """Remove everything in a point directory but its lock."""
    for child in path.iterdir():
        if child.name == LOCK_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _work(queue: _Queue, run_one: Callable[[_Item], str | None]) -> None:
    """Run points from ``queue`` until none is left; ``run_one`` returns a failure or None."""
    while (item := queue.next()) is not None:
        failure = "interrupted"
        try:
            failure = run_one(item)
        finally:
            queue.finished(item, failure)


def _run_in_process(sweep: Sweep, item: _Item, root: Path) -> str | None:
    total = len(sweep.points)
    log.info("%s: %s", item.tag(total), "resuming" if item.resume else "starting")
    try:
        run(sweep.recipe_path, resume=item.resume, recipe=point_recipe(sweep, item.point, root),
            lock=item.lock)
    except Diverged as exc:
        log.warning("%s: %s", item.tag(total), exc)
    except SamatError as exc:
        log.error("%s: failed: %s", item.tag(total), exc)
        return str(exc)
    return None


def _run_subprocess(sweep: Sweep, item: _Item, root: Path, env: dict[str, str]) -> str | None:
    """``samat run`` of the point in a child process that inherits the point's lock and dies
    with this one; exit 0 finished, 3 diverged, anything else a failure."""
    total = len(sweep.points)
    log.info("%s: %s", item.tag(total), "resuming" if item.resume else "starting")
    out_dir = root / item.point.name
    cmd = [sys.executable, "-m", "samat", "run", str(sweep.recipe_path), *sweep.overrides,
           *item.point.overrides, f"output_dir={out_dir}", *(["--resume"] if item.resume else [])]
    output = out_dir / "sweep_output.txt"
    with open(output, "w") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                              env={**env, **item.lock.child_env()}).returncode
    lines = output.read_text().strip().splitlines()
    tail = next((line for line in reversed(lines) if line.startswith("samat: error:")),
                lines[-1] if lines else "")
    if code == 0:
        log.info("%s: finished", item.tag(total))
        return None
    if code == DIVERGED_EXIT:
        log.warning("%s: %s", item.tag(total), tail.removeprefix("samat: error: "))
        return None
    log.error("%s: failed (exit %d): %s", item.tag(total), code, tail)
    return f"exit {code}: {tail} (full output in {output})"


def write_summary(root: Path) -> None:
    """``summary.md`` and ``summary.csv`` (the ``samat report`` table of the finished points)."""
    from samat.report import build_tables, collect_runs, render

    runs = collect_runs([root])
    if not runs:
        return
    tables = build_tables(runs)
    for fmt, name in (("markdown", "summary.md"), ("csv", "summary.csv")):
        tmp = root / (name + ".tmp")
        tmp.write_text(render(tables, fmt))
        os.replace(tmp, root / name)
