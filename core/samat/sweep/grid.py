"""A sweep's grid: the points a recipe's ``sweep:`` block and command-line axes make, where each
point's run directory lives, and the manifest (``sweep.json``) that identifies the sweep.

A recipe declares its sweep in a top-level ``sweep:`` block (``samat run`` ignores it)::

    sweep:
      grid:                                   # cartesian product of the values
        seed: [0, 1, 2]
        train.weight_perturbation.rho: [0.1, 0.2]
      cases:                                  # named alternatives, each crossed with the grid
        sgd: {}
        sam: {train.weight_perturbation: {name: sam, rho: 0.1}}
      launcher: {name: slurm, partition: gpu, gpus_per_point: 1}   # where points run

``samat sweep RECIPE key=v1,v2 ...`` adds (or replaces) grid axes from the command line; an
argument without a comma (or with a YAML list/mapping value) is an ordinary override applied to
every point, and ``sweep.launcher.KEY=value`` sets a launcher parameter. Each point is a run
directory ``SWEEP_DIR/<case>/<axis=value_...>``.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from samat import __version__, results
from samat.errors import SamatError
from samat.factories import check_components
from samat.interfaces import Task
from samat.locking import lock_state
from samat.recipe import (
    EXTENDS,
    Recipe,
    compose_parents,
    compose_recipe,
    find_recipe,
    load_yaml_text,
    located,
    merge_overrides,
    parse_override,
    recipe_from_dict,
)
from samat.runner import prepare

MANIFEST = results.SWEEP_MANIFEST
SWEEP_KEY = "sweep"
POINT_RECORD = "point.json"
"""A point's launch record: state (submitted, running, failed, ...), job id, host, error."""


@dataclass
class Point:
    """One run of a sweep."""

    name: str  # directory relative to the sweep root, e.g. "sam/rho=0.1_seed=0"
    case: str | None
    values: dict[str, Any]  # grid axis -> value
    overrides: list[str]  # key=value strings that make this point from the base recipe

    def status(self, root: Path, ours: bool = False) -> str:
        """``done`` or ``diverged`` (metrics.json), ``running`` (its lock is held, unless
        ``ours``), ``failed`` (its last attempt failed), ``partial`` (a checkpoint), ``stale``
        (a run directory that never checkpointed) or ``pending``."""
        path = root / self.name
        try:
            status = results.run_status(results.read_metrics(path))
        except SamatError:
            status = None  # a half-written metrics file cannot exist (atomic); treat as absent
        if status is not None:
            return "done" if status == results.FINISHED else status
        if not ours and path.is_dir() and lock_state(path)[0] == "held":
            return "running"
        if not ours and read_record(path).get("state") == "failed":
            return "failed"
        if (path / results.CHECKPOINT).is_file():
            return "partial"
        if results.is_run_dir(path):
            return "stale"
        return "pending"


@dataclass
class Sweep:
    """A base recipe, its grid axes and cases, the points they make, and the launcher settings
    (``name`` plus its parameters) from the recipe and the command line."""

    recipe_path: Path
    base: dict[str, Any]
    overrides: list[str]
    grid: dict[str, list[Any]]
    cases: dict[str, dict[str, Any]]
    points: list[Point] = field(default_factory=list)
    launcher: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    """``file:line`` of each key of ``base`` (:func:`samat.recipe.compose_recipe`), for errors."""

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
    """Command-line ``key=v1,v2`` axes and plain ``key=value`` overrides (``sweep.launcher.*``
    settings are left to :func:`launcher_settings`)."""
    axes: dict[str, list[Any]] = {}
    overrides: list[str] = []
    for text in args:
        parts, value = parse_override(text)
        if parts[0] == SWEEP_KEY:
            continue
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


def _case_parents(cases: dict[str, dict[str, Any]], base: dict[str, Any],
                  sources: dict[str, str], recipe_path: Path) -> dict[str, dict[str, Any]]:
    """Cases with an ``extends:`` (recipes or fragments, relative to the file that wrote it):
    the point is ``base`` with those files merged over it as a recipe's ``extends:`` merges
    them, then the case's own ``key.path: value`` overrides; resolved here into the overrides
    that make that difference (:func:`samat.recipe.merge_overrides`), so the manifest records
    exactly what each point sets."""
    resolved = {}
    for name, overrides in cases.items():
        overrides = dict(overrides)
        if EXTENDS in overrides:
            where = sources.get(f"{SWEEP_KEY}.cases.{name}.{EXTENDS}", f"{recipe_path}:0")
            file, _, line = where.rpartition(":")
            parents = compose_parents(overrides.pop(EXTENDS), Path(file), int(line))
            overrides = {**merge_overrides(base, parents), **overrides}
        resolved[name] = overrides
    return resolved


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


def load_sweep(recipe_path: str | Path, args: list[str] = (), build: bool | int = True) -> Sweep:
    """Read ``recipe_path``'s ``sweep:`` block plus command-line axes/overrides, and check
    every point's recipe: names and keys, then by building points as ``samat run`` would —
    every point (``build=True``), none (``False``) or only the point of that index (an
    ``int``). Nothing is written."""
    recipe_path = find_recipe(recipe_path)
    data, sources = compose_recipe(recipe_path)
    if not isinstance(data, dict):
        raise SamatError(f"{recipe_path}: expected a mapping of keys at the top level")
    data = copy.deepcopy(data)
    block = data.pop(SWEEP_KEY, None) or {}
    if not isinstance(block, dict):
        raise SamatError(f"{SWEEP_KEY}: expected a mapping with 'grid' and/or 'cases'")
    unknown = set(block) - {"grid", "cases", "launcher"}
    if unknown:
        raise SamatError(f"Unknown key '{SWEEP_KEY}.{sorted(unknown)[0]}'. "
                         "Valid keys here: grid, cases, launcher")
    grid = _check_grid(block.get("grid"), f"{SWEEP_KEY}.grid")
    cases = _case_parents(_check_cases(block.get("cases"), f"{SWEEP_KEY}.cases"), data,
                          sources, recipe_path)
    cli_axes, overrides = split_arguments(list(args))
    grid.update(_check_grid(cli_axes, "sweep axis"))
    if not grid and not cases:
        raise SamatError(
            f"{recipe_path}: nothing to sweep; add a 'sweep:' block with grid/cases to the "
            "recipe or pass axes such as seed=0,1,2"
        )
    sweep = Sweep(Path(recipe_path), data, overrides, grid, cases, make_points(grid, cases),
                  launcher_settings(block.get("launcher"), list(args)), sources)
    names = [p.name for p in sweep.points]
    if len(set(names)) != len(names):
        raise SamatError("sweep: two points map to the same directory; give distinct values")
    recipes = []
    for point in sweep.points:  # names and keys of every point first: fast
        try:
            recipes.append(point_recipe(sweep, point, Path(".")))
            with located(recipes[-1].origin):
                check_components(recipes[-1])
        except SamatError as exc:
            raise SamatError(f"sweep point {point.name}: {exc}") from None
    if build is True:
        _build_all(sweep, recipes)
    elif build is not False:
        _build_all(sweep, recipes, only=point_index(sweep, build))
    return sweep


def make_points(grid: dict[str, list[Any]], cases: dict[str, dict[str, Any]]) -> list[Point]:
    """Every case crossed with the grid's cartesian product, in a fixed order."""
    points = []
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
        points.append(Point(name, case_name, values, point_overrides))
    return points


def sweep_from_manifest(root: Path) -> Sweep:
    """The sweep ``root/sweep.json`` describes (what a cluster worker runs: the recipe file
    may have changed or be elsewhere since the sweep was launched)."""
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text())
        sweep = Sweep(Path(data["recipe"]), data["base"], list(data["overrides"]),
                      dict(data["grid"]), dict(data["cases"]),
                      launcher=dict(data.get("launcher") or {"name": "local"}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SamatError(f"{path}: not a readable sweep manifest ({exc}); launch the sweep "
                         "again with samat sweep") from None
    sweep.points = make_points(sweep.grid, sweep.cases)
    return sweep


def point_index(sweep: Sweep, index: int) -> int:
    """``index`` checked against the sweep's points (0-based, as Slurm array ids)."""
    if isinstance(index, bool) or not 0 <= index < len(sweep.points):
        raise SamatError(f"--point: {index} is not a point of this sweep (0 to "
                         f"{len(sweep.points) - 1}; list them with --dry-run)")
    return index


def launcher_settings(block: Any, args: list[str]) -> dict[str, Any]:
    """The ``sweep.launcher`` mapping (a bare string is its name) updated by command-line
    ``sweep.launcher.KEY=value`` arguments; its ``name`` defaults to ``local``."""
    if block is None:
        block = {}
    if isinstance(block, str):
        block = {"name": block}
    if not isinstance(block, dict):
        raise SamatError(f"{SWEEP_KEY}.launcher: expected a mapping such as "
                         f"{{name: slurm, partition: gpu}}, got {block!r}")
    settings = {"name": "local", **copy.deepcopy(block)}
    for text in args:
        parts, value = parse_override(text)
        if parts[0] != SWEEP_KEY:
            continue
        if len(parts) != 3 or parts[1] != "launcher":
            raise SamatError(f"'{text}': only sweep.launcher.KEY=value can be set on the command "
                             "line; edit the recipe's sweep block for the rest")
        settings[parts[2]] = value
    return settings


def _build_all(sweep: Sweep, recipes: list[Recipe], only: int | None = None) -> None:
    """Build every point (or point ``only``) as ``samat run`` would (task, model,
    perturbations, attacks, trainer), so that a bad value fails before the first point trains;
    a task is built once per distinct task configuration."""
    tasks: dict[str, Task] = {}
    for index, (point, recipe) in enumerate(zip(sweep.points, recipes, strict=True)):
        if only is not None and index != only:
            continue
        key = json.dumps([recipe.task.as_dict(), recipe.seed, recipe.device], default=str)
        try:
            components, _ = prepare(recipe, task=tasks.get(key))
        except SamatError as exc:
            raise SamatError(f"sweep point {point.name}: {exc}") from None
        tasks[key] = components.task


def point_recipe(sweep: Sweep, point: Point, root: Path) -> Any:
    """The validated recipe of ``point``, writing to ``root/point.name``."""
    recipe = recipe_from_dict(
        sweep.base, [*sweep.overrides, *point.overrides, f"output_dir={root / point.name}"],
        path=sweep.recipe_path, sources=sweep.sources)
    if not recipe.name:
        recipe.name = sweep.recipe_path.stem
    return recipe


def default_root(sweep: Sweep) -> Path:
    """``output_dir`` of the base recipe if set, else ``runs/<name>-sweep``."""
    recipe = recipe_from_dict(sweep.base, sweep.overrides)
    if recipe.output_dir:
        return Path(recipe.output_dir)
    return Path("runs") / f"{recipe.name or sweep.recipe_path.stem}-sweep"


def manifest(sweep: Sweep, root: Path) -> dict[str, Any]:
    """``sweep.json``: the sweep's identity and every point's overrides, status and headline
    numbers."""
    points = []
    for index, p in enumerate(sweep.points):
        entry: dict[str, Any] = {"index": index, "name": p.name, "case": p.case,
                                 "values": p.values, "overrides": p.overrides,
                                 "status": p.status(root)}
        metrics_path = root / p.name / results.METRICS
        if entry["status"] == "done":
            m = json.loads(metrics_path.read_text())
            entry.update({m["metric"]: m["natural"][m["metric"]],
                          "average_under_attack": m.get("average_under_attack")})
        points.append(entry)
    return {"recipe": str(sweep.recipe_path), "samat": __version__, **sweep.identity(),
            "launcher": sweep.launcher, "points": points}


def write_manifest(sweep: Sweep, root: Path) -> None:
    """(Re)write ``root/sweep.json``."""
    results.write_json(root / MANIFEST, manifest(sweep, root))


def check_same_sweep(sweep: Sweep, root: Path) -> None:
    """Refuse to continue a sweep directory that holds a different sweep."""
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


def read_record(path: Path) -> dict[str, Any]:
    """A point directory's launch record (:data:`POINT_RECORD`); {} if absent or unreadable."""
    try:
        data = json.loads((path / POINT_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(path: Path, **fields: Any) -> None:
    """Update a point directory's launch record with ``fields``."""
    results.write_json(path / POINT_RECORD, {**read_record(path), **fields})
