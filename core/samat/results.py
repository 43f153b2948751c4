"""Run directories: resolved config, metrics.json, history.jsonl, checkpoints, log, tables."""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

import yaml

from samat import __version__
from samat.atomic import to_json, write_json, write_text
from samat.errors import SamatError
from samat.gitinfo import git_info
from samat.plugins import plugin_versions

CONFIG = "config.yaml"
METRICS = "metrics.json"
HISTORY = "history.jsonl"
METRICS_CSV = "metrics.csv"
"""Every run's logged numbers, a row per event as the run goes (:mod:`samat.tracking`)."""
LOG = "log.txt"
CHECKPOINT = Path("checkpoints") / "last.pt"
BEST_CHECKPOINT = Path("checkpoints") / "best.pt"
"""The checkpoint of the best periodic evaluation so far (``train.keep_best``)."""
SWEEP_MANIFEST = "sweep.json"
"""A sweep directory's record of its recipe, grid, cases and points."""
FINISHED, DIVERGED = "finished", "diverged"
"""``metrics.json`` ``status`` values: evaluated normally, or stopped on a non-finite value."""

_STAMP = re.compile(r"(\d{8}-\d{6})(?:-(\d+))?")

__all__ = ["BEST_CHECKPOINT", "CHECKPOINT", "CONFIG", "DIVERGED", "FINISHED", "HISTORY", "LOG",
           "METRICS", "METRICS_CSV", "SWEEP_MANIFEST", "check_output_dir", "default_runs_root",
           "find_resumable",
           "format_table", "is_run_dir", "new_run_dir", "read_config", "read_metrics",
           "read_sweep_grid", "results_table", "run_status", "versions", "write_config",
           "write_history", "write_json"]


def default_runs_root(recipe_name: str) -> Path:
    return Path("runs") / recipe_name


def check_output_dir(path: Path, key: str = "output_dir") -> None:
    """Raise unless a run directory can be created at ``path`` (checked without writing): no
    file in the way and the nearest existing ancestor is a writable directory."""
    if path.exists() and not path.is_dir():
        raise SamatError(f"{key}: {path} is a file, not a directory; choose another path")
    ancestor = path
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SamatError(f"{key}: {path} lies under the file {ancestor}; choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SamatError(f"{key}: {ancestor} is not writable; choose a writable directory")


def make_dirs(path: Path, key: str = "output_dir") -> None:
    """``mkdir -p path``, an OSError becoming a one-line error naming ``key``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SamatError(f"{key}: cannot create {path}: {exc.strerror or exc}; choose a writable "
                         "directory") from None


def new_run_dir(root: Path) -> Path:
    """A fresh ``root/<YYYYmmdd-HHMMSS>[-N]`` directory, created atomically (two processes
    starting in the same second get different directories)."""
    make_dirs(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        candidate = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise SamatError(f"output_dir: cannot create {candidate}: {exc.strerror or exc}; "
                             "choose a writable directory") from None
        return candidate
    raise SamatError(f"output_dir: {root} holds too many runs started in the second {stamp}")


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG).is_file()


def _order(path: Path) -> tuple[str, int]:
    match = _STAMP.fullmatch(path.name)
    return (match.group(1), int(match.group(2) or 1)) if match else ("", 0)


def find_resumable(output_dir: Path | None, runs_root: Path) -> Path:
    """The run to continue: ``output_dir`` itself, or the newest run (by its start time) under
    ``runs_root``. Whether it can be resumed is the caller's question."""
    if output_dir is not None:
        if is_run_dir(output_dir):
            return output_dir
        raise SamatError(f"--resume: {output_dir} holds no run ({CONFIG} missing); run without "
                         "--resume to start one")
    runs = sorted((p for p in runs_root.glob("*") if _order(p)[0] and p.is_dir()), key=_order)
    if not runs:
        raise SamatError(f"--resume: no run to resume under {runs_root}/; run without --resume "
                         "to start one")
    return runs[-1]


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_text(run_dir / CONFIG, yaml.safe_dump(config, sort_keys=False))


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved recipe; a missing or malformed file is a one-line error."""
    path = run_dir / CONFIG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SamatError(f"{path}: missing; this is not a complete samat run directory") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problem = getattr(exc, "problem", None) or exc
        raise SamatError(f"{path}: unreadable ({problem}); restore it or start a new run") from None
    if not isinstance(data, dict):
        raise SamatError(f"{path}: not a samat config (expected a mapping); restore it or start "
                         "a new run")
    return data


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """``metrics.json`` of ``run_dir`` (None if absent); unreadable is a one-line error."""
    path = run_dir / METRICS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SamatError(f"{path}: unreadable ({exc}); delete it to evaluate the run "
                         "again") from None
    if not isinstance(data, dict):
        raise SamatError(f"{path}: not a samat metrics file")
    return data


def read_sweep_grid(sweep_dir: Path) -> dict[str, list[Any]] | None:
    """The grid (axis -> values, as written) of the sweep at ``sweep_dir``; None if it holds no
    sweep manifest, a one-line error if the manifest is unreadable."""
    path = sweep_dir / SWEEP_MANIFEST
    if not path.is_file():
        return None
    try:
        grid = json.loads(path.read_text(encoding="utf-8")).get("grid", {})
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise SamatError(f"{path}: unreadable ({exc}); run the sweep again to rewrite "
                         "it") from None
    if not isinstance(grid, dict):
        raise SamatError(f"{path}: 'grid' is not a mapping; run the sweep again to rewrite it")
    return grid


def run_status(metrics: dict[str, Any] | None) -> str | None:
    """``finished``, ``diverged`` or None (no metrics yet); runs older than the ``status`` key
    count as finished."""
    if metrics is None:
        return None
    return metrics.get("status", FINISHED)


def write_history(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite ``history.jsonl`` (one strict JSON object per epoch) atomically."""
    write_text(path, "".join(to_json(r) + "\n" for r in records))


def versions() -> dict[str, Any]:
    """Versions of Python, samat, torch and every loaded plugin, and the git commit of samat's
    own source tree (read from disk: no git command runs)."""
    import torch  # results are also read where torch is not needed (reports)

    return {
        "python": platform.python_version(),
        "samat": __version__,
        "torch": torch.__version__,
        "plugins": plugin_versions(),
        "samat_git": git_info(Path(__file__).parent),
    }


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"
    return "" if value is None else str(value)


def _brief(value: Any) -> str:
    """A parameter for the end-of-run table: a mapping (such as a text attack's resources) as
    its keys with the first clause of each value; metrics.json keeps the whole text."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {str(v).split(':')[0]}" for k, v in value.items()) + "}"
    return _cell(value)


def results_table(metrics: dict[str, Any]) -> str:
    """The table the CLI prints at the end of a run."""
    key = metrics["metric"]
    better = "higher" if metrics.get("higher_is_better", True) else "lower"
    rows: list[list[Any]] = [["natural", "", metrics["natural"][key],
                              metrics["natural"].get("n_examples")]]
    for result in metrics["attacks"]:
        params = {k: v for k, v in result["attack"].items() if k not in ("name",)}
        shown = ", ".join(f"{k}={_brief(v)}" for k, v in params.items() if v is not None)
        rows.append([result["label"], shown, result[key], result.get("n_examples")])
    if metrics.get("average_under_attack") is not None:
        rows.append(["average over attacks", "", metrics["average_under_attack"], ""])
    training = metrics.get("training") or {}  # None: samat eval of a model samat did not train
    if training:
        how = (f"weight={training['weight_perturbation']['name']} "
               f"input={training['input_perturbation']['name']}")
    else:
        evaluated = metrics.get("evaluated") or {}
        how = f"evaluated={evaluated.get('kind', 'model')}:{evaluated.get('source', '?')}"
    title = (f"{metrics['recipe']['name']}: task={metrics['task']['name']} {how} "
             f"seed={metrics['seed']}  ({key}, {better} is better)")
    table = format_table(["evaluation", "parameters", key, "n"], rows)
    extras = [f"{k}: {_cell(v)}" for k, v in metrics.get("report", {}).items()
              if isinstance(v, int | float)]
    records = {k: v for k, v in metrics.get("report", {}).items()
               if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)}
    skipped = training.get("skipped_steps")
    if skipped:
        extras.append(f"skipped steps (non-finite, train.on_nonfinite=skip): {skipped}")
    parts = [title, table, *extras]
    if metrics.get("measures"):
        rows = [[m["label"], ", ".join(f"{k}={_cell(v)}" for k, v in m["measure"].items()
                                       if k != "name" and v is not None),
                 m["key"], m["value"], m.get("n_examples"), f"{m.get('seconds', 0):.2g}"]
                for m in metrics["measures"]]
        parts += ["\nmeasures:", format_table(["measure", "parameters", "value of", "value",
                                               "n", "seconds"], rows)]
    for name, recs in records.items():
        headers = list(recs[0])
        parts += [f"\n{name}:", format_table(headers, [[r.get(h) for h in headers] for r in recs])]
    kind = "eval directory" if metrics.get("evaluated") else "run directory"
    parts.append(f"{kind}: {metrics['run_dir']}")
    return "\n".join(parts)
