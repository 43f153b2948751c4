"""Run directories: resolved config, metrics.json, history.jsonl, checkpoints, log, tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from samat.errors import SamatError

CONFIG = "config.yaml"
METRICS = "metrics.json"
HISTORY = "history.jsonl"
LOG = "log.txt"
CHECKPOINT = Path("checkpoints") / "last.pt"


def default_runs_root(recipe_name: str) -> Path:
    return Path("runs") / recipe_name


def new_run_dir(root: Path) -> Path:
    """A fresh ``root/<YYYYmmdd-HHMMSS>[-N]`` directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    (candidate / CHECKPOINT.parent).mkdir(parents=True)
    return candidate


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG).is_file()


def find_resumable(output_dir: Path | None, runs_root: Path) -> Path:
    """The run to continue: ``output_dir`` itself, or the newest run under ``runs_root``."""
    if output_dir is not None:
        if (output_dir / CHECKPOINT).is_file():
            return output_dir
        raise SamatError(
            f"--resume: no checkpoint at {output_dir / CHECKPOINT}; run without --resume to start"
        )
    runs = sorted(
        (p for p in runs_root.glob("*") if (p / CHECKPOINT).is_file()),
        key=lambda p: (p / CHECKPOINT).stat().st_mtime,
    )
    if not runs:
        raise SamatError(
            f"--resume: no run to resume under {runs_root}/ (no checkpoints/last.pt); "
            "run without --resume to start one"
        )
    return runs[-1]


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, tuple | set):
        return list(obj)
    return str(obj)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    tmp = run_dir / (CONFIG + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, run_dir / CONFIG)


def read_config(run_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((run_dir / CONFIG).read_text())


def write_history(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite ``history.jsonl`` (one JSON object per epoch) atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, default=_jsonable) + "\n" for r in records))
    os.replace(tmp, path)


def git_commit(path: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the git checkout holding ``path`` (None outside git)."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(
                ["git", "-C", str(path), *args], capture_output=True, text=True, check=True,
                timeout=10,
            ).stdout.strip()

        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, Any]:
    """Versions of Python, samat, torch and every loaded plugin, and samat's git commit."""
    import torch

    import samat
    from samat.plugins import plugin_versions

    return {
        "python": platform.python_version(),
        "samat": samat.__version__,
        "torch": torch.__version__,
        "plugins": plugin_versions(),
        "samat_git": git_commit(Path(samat.__file__).parent),
        "cwd_git": git_commit(Path.cwd()),
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


def results_table(metrics: dict[str, Any]) -> str:
    """The table the CLI prints at the end of a run."""
    key = metrics["metric"]
    better = "higher" if metrics.get("higher_is_better", True) else "lower"
    rows: list[list[Any]] = [["natural", "", metrics["natural"][key],
                              metrics["natural"].get("n_examples")]]
    for result in metrics["attacks"]:
        params = {k: v for k, v in result["attack"].items() if k not in ("name",)}
        shown = ", ".join(f"{k}={_cell(v)}" for k, v in params.items() if v is not None)
        rows.append([result["label"], shown, result[key], result.get("n_examples")])
    if metrics.get("average_under_attack") is not None:
        rows.append(["average over attacks", "", metrics["average_under_attack"], ""])
    title = (f"{metrics['recipe']['name']}: task={metrics['task']['name']} "
             f"weight={metrics['training']['weight_perturbation']['name']} "
             f"input={metrics['training']['input_perturbation']['name']} "
             f"seed={metrics['seed']}  ({key}, {better} is better)")
    table = format_table(["evaluation", "parameters", key, "n"], rows)
    extras = [f"{k}: {_cell(v)}" for k, v in metrics.get("report", {}).items()
              if isinstance(v, int | float)]
    records = {k: v for k, v in metrics.get("report", {}).items()
               if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)}
    parts = [title, table, *extras]
    for name, recs in records.items():
        headers = list(recs[0])
        parts += [f"\n{name}:", format_table(headers, [[r.get(h) for h in headers] for r in recs])]
    parts.append(f"run directory: {metrics['run_dir']}")
    return "\n".join(parts)
