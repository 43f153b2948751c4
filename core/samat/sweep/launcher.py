"""Where a sweep's points run: the launcher interface, its settings and the built-in three.

A launcher receives the indices of the points still to run and runs them — in this process or
its children (``local``), as a Slurm job array through submitit (``slurm``) or as Ray tasks
(``ray``). Whatever runs a point calls :func:`samat.sweep.point.run_point`, so the per-point
lock makes any mix of launchers on one output directory train each point exactly once.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from samat.errors import SamatError
from samat.names import unknown_name_message
from samat.recipe import from_mapping
from samat.sweep.grid import Sweep

LAUNCHERS = {
    "local": "samat.sweep.local:LocalLauncher",
    "slurm": "samat.sweep.slurm_launcher:SlurmLauncher",
    "ray": "samat.sweep.ray_launcher:RayLauncher",
}


class Launcher(ABC):
    """Runs points of one sweep. Subclasses declare ``name``, ``Options`` (a dataclass of their
    ``sweep.launcher`` parameters, validated by :meth:`check`) and whether :meth:`launch`
    returns only once the points have run (``blocking``) or after submitting them."""

    name: ClassVar[str]
    Options: ClassVar[type]
    blocking: ClassVar[bool] = True

    def __init__(self, sweep: Sweep, root: Path, options: Any) -> None:
        self.sweep, self.root, self.options = sweep, root, options

    @classmethod
    def check(cls, options: Any) -> None:
        """Raise :class:`SamatError` (naming ``sweep.launcher.KEY``) on a bad option."""
        return None

    @abstractmethod
    def launch(self, todo: list[int]) -> None:
        """Run (or submit) the points of these indices."""

    def plan(self, todo: list[int]) -> list[str]:
        """Lines for ``--dry-run``: where the points would run and what they may cost."""
        return [f"launcher {self.name}: {len(todo)} point(s) to run"]

    def job_states(self) -> dict[int, str]:
        """What the launcher knows of points it submitted (``--status``): index -> state."""
        return {}


def make_launcher(sweep: Sweep, root: Path, name: str | None = None,
                  **overrides: Any) -> Launcher:
    """The launcher ``name`` (default: the sweep's ``launcher.name``) with the sweep's
    ``launcher`` parameters, then ``overrides`` (command-line options such as ``jobs``)."""
    settings = dict(sweep.launcher)
    name = name or settings.pop("name", "local")
    settings.pop("name", None)
    if name not in LAUNCHERS:
        raise SamatError(unknown_name_message("launcher", name, sorted(LAUNCHERS))
                         + " (at --launcher / sweep.launcher.name)")
    module, _, attr = LAUNCHERS[name].partition(":")
    cls: type[Launcher] = getattr(importlib.import_module(module), attr)
    fields = {f.name for f in dataclasses.fields(cls.Options)}
    for key, value in overrides.items():
        if key not in fields:
            flag = "--" + key.replace("_", "-")
            raise SamatError(f"{flag}: applies to the local launcher, not {name} (see "
                             "docs/cluster.md for its sweep.launcher parameters)")
        settings[key] = value
    options = from_mapping(cls.Options, settings, "sweep.launcher")
    cls.check(options)
    return cls(sweep, root, options)
