"""Finished run directories as the report reads them, and the sweeps they came from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samat import results
from samat.errors import SamatError
from samat.plugins import registries
from samat.recipe import normalize
from samat.report.measures import measures_problem


@dataclass
class Run:
    """A finished run directory: its ``metrics.json`` content and resolved config."""

    path: Path
    metrics: dict[str, Any]
    config: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.metrics.get("seed", self.config.get("seed", 0)))

    @property
    def diverged(self) -> bool:
        """Stopped on a non-finite value: no results, left out of every mean."""
        return results.run_status(self.metrics) == results.DIVERGED

    @property
    def weight_perturbation(self) -> dict[str, Any]:
        """The training's weight perturbation config (``{"name": "none"}`` if there was none)."""
        return perturbations(self.config)[0]

    @property
    def input_perturbation(self) -> dict[str, Any]:
        """The training's input perturbation config (``{"name": "none"}`` if there was none)."""
        return perturbations(self.config)[1]

    @property
    def task(self) -> dict[str, Any]:
        """The task config that defines the experiment: without the seed and the parameters
        the task declares as environment (where the data lives)."""
        task = self.config.get("task") or {"name": self.metrics.get("task", {}).get("name", "?")}
        if isinstance(task, str):
            task = {"name": task}
        ignored = {"seed", *task_environment(task.get("name"))}
        return {k: v for k, v in task.items() if k not in ignored}


def perturbations(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run config's weight and input perturbation configs (copies); one with radius 0 counts
    as ``none``."""
    train = config.get("train", {})
    found = []
    for key in ("weight_perturbation", "input_perturbation"):
        component = dict(train.get(key) or {"name": "none"})
        radius = component.get("eps", component.get("rho"))
        if isinstance(radius, int | float) and radius == 0:
            component = {"name": "none"}
        found.append(component)
    return found[0], found[1]


def task_environment(name: Any) -> tuple[str, ...]:
    """The parameters task ``name`` declares as environment (none if no plugin registers it)."""
    try:
        return registries().tasks.get(name).environment
    except SamatError:
        return ()


def collect_runs(paths: list[str | Path]) -> list[Run]:
    """Every finished run (a directory with ``metrics.json``) at or below ``paths``."""
    found: dict[Path, Run] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SamatError(f"report: {path} does not exist; pass run or sweep directories")
        candidates = [path] if (path / results.METRICS).is_file() else sorted(
            p.parent for p in path.rglob(results.METRICS))
        for run_dir in candidates:
            found.setdefault(run_dir.resolve(), _load_run(run_dir))
    return list(found.values())


def _load_run(run_dir: Path) -> Run:
    try:
        metrics = json.loads((run_dir / results.METRICS).read_text())
        config = results.read_config(run_dir) if results.is_run_dir(run_dir) else {}
    except (OSError, ValueError) as exc:
        raise SamatError(f"report: cannot read {run_dir / results.METRICS}: {exc}") from None
    problem = _metrics_problem(metrics)
    if problem:
        raise SamatError(f"report: {run_dir / results.METRICS} is not a samat metrics file "
                         f"({problem}); delete that run directory or run it again")
    return Run(run_dir, metrics, config or {})


def _metrics_problem(metrics: Any) -> str | None:
    """What keeps ``metrics`` from being read as a ``metrics.json`` (None if nothing)."""
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if not isinstance(metrics, dict):
        return "not a JSON object"
    metric = metrics.get("metric")
    if not isinstance(metric, str) or "natural" not in metrics:
        return "no 'metric' or 'natural'"
    natural = metrics["natural"]
    if results.run_status(metrics) != results.DIVERGED and not (
            isinstance(natural, dict) and number(natural.get(metric))):
        return f"no number at natural.{metric}"
    attacks = metrics.get("attacks", [])
    if not isinstance(attacks, list) or not all(
            isinstance(a, dict) and isinstance(a.get("label"), str)
            and isinstance(a.get("attack"), dict) and (a.get(metric) is None or number(a[metric]))
            for a in attacks):
        return f"'attacks' is not a list of entries with 'label', 'attack' and a number at " \
               f"'{metric}'"
    if "measures" in metrics and (problem := measures_problem(metrics["measures"])):
        return problem
    for key in ("report", "task", "versions"):
        if not isinstance(metrics.get(key, {}), dict):
            return f"'{key}' is not a mapping"
    if "seed" in metrics and not number(metrics["seed"]):
        return "'seed' is not a number"
    return None


def sweep_axes(paths: list[str | Path]) -> list[str]:
    """Numeric grid axes (other than the seed) of the sweeps at ``paths``: plotted as curves."""
    axes: list[str] = []
    for path in map(Path, paths):
        grid = normalize(results.read_sweep_grid(path) or {})
        for key, values in grid.items():
            if key != "seed" and key not in axes and all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                axes.append(key)
    return axes
