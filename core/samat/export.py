"""Exported models: weights (``model.safetensors``, or a library's own directory) and
``model.json`` describing them, written into the run directory at the end of training;
:func:`load_model` and :func:`model_from_spec` build the model again without the data, the
network, or unpickling anything (docs/models.md has the schema)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samat import __version__
from samat.atomic import to_json, write_atomic_path, write_directory, write_json
from samat.errors import SamatError, UnknownNameError
from samat.interfaces import Task
from samat.plugins import registries

log = logging.getLogger("samat")

FORMAT = "samat-model"
"""``model.json``'s ``format``."""
FORMAT_VERSION = 1
"""``model.json``'s ``format_version``; a reader refuses a newer one."""
SPEC = "model.json"
WEIGHTS = "model.safetensors"
PRETRAINED = "model"
"""The directory a task's own format (:meth:`samat.Task.save_pretrained`) is written to."""
SAFETENSORS = "safetensors"
DESCRIPTIVE = ("classes", "input_shape", "normalization", "output")
"""Optional keys of :meth:`samat.Task.model_spec` besides ``architecture``."""

__all__ = ["FORMAT", "FORMAT_VERSION", "PRETRAINED", "SPEC", "WEIGHTS", "export_model",
           "load_model", "model_from_spec", "read_spec"]


# -- writing ---------------------------------------------------------------------------------
def export_model(task: Task, task_name: str, model: nn.Module, directory: Path,
                 trained: Mapping[str, Any] | None = None) -> Path | None:
    """Write ``model`` (trained on ``task``, registered as ``task_name``) into ``directory``:
    its weights, then ``model.json`` (each atomically); ``trained`` is recorded as where the
    weights come from. Returns the ``model.json`` path, or None (nothing written) when the task
    exports no model or a weight is not finite."""
    described = task.model_spec()
    if described is None:
        return None
    spec = _task_spec(described, task_name)
    if not _finite(model):
        log.warning("model not exported: its weights are not finite")
        return None
    fmt = task.model_format
    if fmt == SAFETENSORS:
        from safetensors.torch import save_model

        path = directory / WEIGHTS
        write_atomic_path(path, lambda tmp: save_model(model, str(tmp), metadata={"format": "pt"}))
        weights = {"format": SAFETENSORS, "path": WEIGHTS, "sha256": _sha256(path)}
    else:
        write_directory(directory / PRETRAINED, lambda tmp: task.save_pretrained(model, tmp))
        weights = {"format": fmt, "path": PRETRAINED}
    bounds = task.input_bounds
    record = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "samat_version": __version__,
        "task": task_name, "architecture": spec["architecture"], "weights": weights,
        **{key: spec.get(key) for key in DESCRIPTIVE},
        "input_range": None if bounds is None else [float(bounds[0]), float(bounds[1])],
        "trained": dict(trained or {}),
    }
    write_json(directory / SPEC, record)
    return directory / SPEC


def _task_spec(described: Any, task_name: str) -> dict[str, Any]:
    """``described`` (a task's ``model_spec()``) as plain JSON, checked."""
    where = f"task '{task_name}': model_spec()"
    try:
        spec = json.loads(to_json(described))
    except (TypeError, ValueError) as exc:
        raise SamatError(f"{where} is not JSON-serialisable ({exc}); fix the plugin") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("architecture"), dict):
        raise SamatError(f"{where} must be a mapping holding an 'architecture' mapping; fix the "
                         "plugin")
    unknown = sorted(set(spec) - {"architecture", *DESCRIPTIVE})
    if unknown:
        raise SamatError(f"{where} has unknown keys {unknown} (allowed: architecture, "
                         f"{', '.join(DESCRIPTIVE)}); fix the plugin")
    return spec


def _finite(model: nn.Module) -> bool:
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- reading ---------------------------------------------------------------------------------
def read_spec(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The checked content of ``model.json`` at ``path`` (the file, or a directory holding it,
    such as a run directory) and the path of the file."""
    path = Path(path).expanduser()
    fix = "give a run directory, its model.json, or the directory holding them"
    if path.is_dir():
        path = path / SPEC
        if not path.is_file():
            why = ("the run exported no model (it diverged, is unfinished, or its task exports "
                   "none)" if (path.parent / "config.yaml").is_file() else "not a model directory")
            raise SamatError(f"{path}: missing: {why}; {fix}")
    elif not path.exists():
        raise SamatError(f"{path}: not found; {fix}")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SamatError(f"{path}: unreadable ({_one_line(exc)}); {fix}, or export the "
                         "model again") from None
    check_spec(spec, str(path))
    return spec, path


def check_spec(spec: Any, where: str) -> None:
    """Raise a one-line :class:`SamatError` naming ``where`` unless ``spec`` is a model.json
    content this samat can read."""
    def bad(why: str) -> SamatError:
        return SamatError(f"{where}: {why}; give the model.json samat wrote for the run")

    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise bad(f"not a samat model description ('format' is not '{FORMAT}')")
    version = spec.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad("'format_version' must be a positive integer")
    if version > FORMAT_VERSION:
        raise SamatError(f"{where}: format_version {version} is newer than this samat reads "
                         f"({FORMAT_VERSION}); upgrade samat")
    if not isinstance(spec.get("task"), str) or not spec["task"]:
        raise bad("'task' must be a task name")
    if not isinstance(spec.get("architecture"), dict):
        raise bad("'architecture' must be a mapping")
    weights = spec.get("weights")
    if not (isinstance(weights, dict) and isinstance(weights.get("format"), str)
            and isinstance(weights.get("path"), str) and weights["path"]):
        raise bad("'weights' must be a mapping with 'format' and 'path'")
    if Path(weights["path"]).is_absolute() or ".." in Path(weights["path"]).parts:
        raise bad("'weights.path' must be a path inside the model's directory")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model a run exported, in eval mode on ``device``: ``path`` is the run directory,
    its ``model.json``, or the directory holding them. ``model.samat_info`` is the model.json
    content (``classes``, ``input_shape``, ``input_range``, ``normalization``, ...).

    The architecture is built by the task's registered ``model_builder`` (no data needed) and
    the weights are read with safetensors (or the task's library, from safetensors files):
    nothing is unpickled. Any problem is a one-line :class:`SamatError` naming the file."""
    spec, spec_path = read_spec(path)
    weights = spec_path.parent / spec["weights"]["path"]
    return _build(spec, weights, str(spec_path), device, spec["weights"].get("sha256"))


def model_from_spec(spec: Mapping[str, Any], weights: str | Path | None = None, *,
                    device: str | torch.device = "cpu", where: str = "model spec") -> nn.Module:
    """The model ``spec`` (a model.json content) describes, in eval mode on ``device``, with
    the weights of ``weights``: a safetensors file (the spec's ``weights.format`` is
    ``safetensors``; any file of that state dict, whatever the spec's checksum) or the
    directory of the spec's own format. ``weights=None`` keeps the architecture's initial
    weights (safetensors format only). Errors name ``where`` (e.g. the spec's path)."""
    spec = dict(spec)
    check_spec(spec, where)
    return _build(spec, None if weights is None else Path(weights).expanduser(), where, device,
                  None)


def _build(spec: dict[str, Any], weights: Path | None, where: str,
           device: str | torch.device, sha256: str | None) -> nn.Module:
    fmt = spec["weights"]["format"]
    if weights is not None and not weights.exists():
        raise SamatError(f"{weights}: missing (the weights for {where}); restore it or export "
                         "the model again")
    builder = _builder(spec["task"], where)
    architecture = spec["architecture"]
    if fmt == SAFETENSORS:
        model = _call(builder, architecture, where)
        if weights is not None:
            _load_safetensors(model, weights, sha256)
    elif weights is None:
        raise SamatError(f"{where}: its weights are a '{fmt}' directory; give that directory")
    else:
        model = _call(builder, {**architecture, "pretrained": weights}, where, weights)
    if not isinstance(model, nn.Module):
        raise SamatError(f"{where}: the model builder of task '{spec['task']}' returned "
                         f"{type(model).__name__}, not a torch module; fix the plugin")
    model.samat_info = spec
    return model.to(device).eval()


def _builder(task: str, where: str) -> Any:
    try:
        entry = registries().tasks.get(task)
    except UnknownNameError as exc:
        raise SamatError(f"{where}: {exc}; install the plugin that provides it") from None
    builder = entry.model
    if builder is None:
        raise SamatError(f"{where}: task '{task}' (plugin '{entry.plugin}') registers no "
                         "model_builder, so its models cannot be rebuilt; upgrade the plugin")
    return builder


def _call(builder: Any, kwargs: dict[str, Any], where: str, files: Path | None = None) -> Any:
    try:
        return builder(**kwargs)
    except SamatError as exc:
        raise SamatError(f"{where}: {exc}") from None
    except Exception as exc:  # builders and the libraries they load with raise many kinds
        if files is not None:
            raise SamatError(f"{files}: unreadable ({_one_line(exc)}); restore it or export "
                             "the model again") from None
        if not isinstance(exc, TypeError | ValueError | KeyError):
            raise
        raise SamatError(f"{where}: 'architecture' does not build a model "
                         f"({_one_line(exc)}); give the model.json samat wrote") from None


def _load_safetensors(model: nn.Module, path: Path, sha256: str | None) -> None:
    from safetensors.torch import load_model as load_weights

    fix = "restore it or export the model again"
    if path.is_dir():
        raise SamatError(f"{path}: a directory, not a safetensors file; give the "
                         f"{WEIGHTS} file")
    if sha256 is not None and _sha256(path) != sha256:
        raise SamatError(f"{path}: corrupt (its sha256 differs from the one model.json "
                         f"records); {fix}")
    try:
        load_weights(model, path, strict=True)
    except Exception as exc:  # safetensors and torch raise many kinds for bad files
        text = _one_line(exc)
        if "state_dict" in text:
            raise SamatError(f"{path}: does not fit the architecture ({text}); give the "
                             "weights exported with this model.json") from None
        raise SamatError(f"{path}: unreadable ({text}); {fix}") from None


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}".rstrip(": ")
