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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from samat import results
from samat.errors import SamatError
from samat.recipe import parse_override, read_yaml, recipe_from_dict

log = logging.getLogger("samat")

MANIFEST = "sweep.json"
SWEEP_KEY = "sweep"


@dataclass
class Point:
    """One run of a sweep."""

    name: str  # directory relative to the sweep root, e.g. "sam/rho=0.1_seed=0"
    case: str | None
    values: dict[str, Any]  # grid axis -> value
    overrides: list[str]  # key=value strings that make this point from the base recipe

    def status(self, root: Path) -> str:
        """``done`` (metrics.json), ``partial`` (a checkpoint), ``stale`` (a run directory
        that never checkpointed) or ``pending``."""
        path = root / self.name
        if (path / results.METRICS).is_file():
            return "done"
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
            items = [yaml.safe_load(v) for v in raw.split(",")]
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


def load_sweep(recipe_path: str | Path, args: list[str] = ()) -> Sweep:
    """Read ``recipe_path``'s ``sweep:`` block plus command-line axes/overrides, and check
    every point's recipe (nothing is built or written)."""
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
    grid.update(cli_axes)
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
    from samat.build import check_components

    for point in sweep.points:
        try:
            check_components(point_recipe(sweep, point, Path(".")))
        except SamatError as exc:
            raise SamatError(f"sweep point {point.name}: {exc}") from None
    return sweep


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
    from samat import __version__

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

    Returns the manifest's point entries.
    """
    if jobs < 1:
        raise SamatError(f"--jobs: must be >= 1, got {jobs}")
    _check_same_sweep(sweep, root)
    root.mkdir(parents=True, exist_ok=True)
    results.write_json(root / MANIFEST, _manifest(sweep, root))
    todo = []
    for i, point in enumerate(sweep.points, 1):
        status = point.status(root)
        if status == "done":
            log.info("[%d/%d] %s: finished, skipped", i, len(sweep.points), point.name)
            continue
        if status == "stale":  # crashed before its first checkpoint: nothing to keep
            shutil.rmtree(root / point.name)
        todo.append((i, point, status == "partial"))
    try:
        if jobs == 1:
            for i, point, resume in todo:
                _run_in_process(sweep, point, root, resume, f"[{i}/{len(sweep.points)}]")
        else:
            _run_subprocesses(sweep, todo, root, jobs)
    finally:
        results.write_json(root / MANIFEST, _manifest(sweep, root))
    write_summary(root)
    return _manifest(sweep, root)["points"]


def _run_in_process(sweep: Sweep, point: Point, root: Path, resume: bool, tag: str) -> None:
    from samat.run import run

    log.info("%s %s: %s", tag, point.name, "resuming" if resume else "starting")
    try:
        run(sweep.recipe_path, resume=resume, recipe=point_recipe(sweep, point, root))
    except SamatError as exc:
        raise SamatError(f"sweep point {point.name}: {exc}") from None


def _run_subprocesses(
    sweep: Sweep, todo: list[tuple[int, Point, bool]], root: Path, jobs: int
) -> None:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))

    def one(item: tuple[int, Point, bool]) -> tuple[Point, int, str]:
        i, point, resume = item
        log.info("[%d/%d] %s: %s", i, len(sweep.points), point.name,
                 "resuming" if resume else "starting")
        out_dir = root / point.name
        out_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "samat", "run", str(sweep.recipe_path), *sweep.overrides,
               *point.overrides, f"output_dir={out_dir}", *(["--resume"] if resume else [])]
        with open(out_dir / "sweep_output.txt", "w") as out:
            code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        tail = (out_dir / "sweep_output.txt").read_text().strip().splitlines()[-1:] or [""]
        log.info("[%d/%d] %s: %s", i, len(sweep.points), point.name,
                 "finished" if code == 0 else f"failed (exit {code})")
        return point, code, tail[0]

    with ThreadPoolExecutor(jobs) as pool:
        failed = [(p, code, tail) for p, code, tail in pool.map(one, todo) if code != 0]
    if failed:
        p, code, tail = failed[0]
        raise SamatError(
            f"sweep: {len(failed)} point(s) failed, first {p.name} (exit {code}): {tail} "
            f"(full output in {root / p.name / 'sweep_output.txt'}); re-run to retry them"
        )


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
