"""How the report names things: methods (``SAM ρ=0.1``, ``AT ℓ∞ ε=8/255``), radii, metrics.

Names and directions come from what plugins registered (a perturbation's ``label``, a metric's
title); without a declaration, a perturbation is its name in capitals and a metric its key.
"""

from __future__ import annotations

import re
from typing import Any

from samat.errors import SamatError
from samat.plugins import registries
from samat.recipe import OPTIMIZERS
from samat.registry import Registry
from samat.report.runs import perturbations

NORM_SYMBOLS = {"linf": "ℓ∞", "l2": "ℓ2", "l1": "ℓ1"}
GREEK = {"alpha": "α", "beta": "β", "gamma": "γ"}


def format_eps(eps: float) -> str:
    """``0.0313...`` -> ``8/255``; radii with a short decimal form (``0.1``) as ``%g``."""
    if repr(eps) == repr(float(f"{eps:.4g}")):
        return f"{eps:g}"
    if 0 < eps < 1:
        k = eps * 255
        if abs(k - round(k, 2)) < 1e-6:
            return f"{round(k, 2):g}/255"
    return f"{eps:g}"


def short(value: Any) -> str:
    """A config value in a label: floats as ``%g``, anything else as ``str``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def parameters(described: dict[str, Any], hidden: tuple[str, ...] = ()) -> str:
    """`` (key=value, ...)`` of an attack's or measure's ``describe()`` (``name``, None values
    and ``hidden`` left out; radii as ``8/255``), or nothing."""
    def value(key: str, v: Any) -> str:
        return format_eps(v) if key in ("eps", "alpha") and isinstance(v, float) else short(v)

    shown = ", ".join(f"{k}={value(k, v)}" for k, v in described.items()
                      if k not in ("name", *hidden) and v is not None)
    return f" ({shown})" if shown else ""


def metric_title(key: str) -> str:
    """How the report titles the result ``key`` (``mIoU``; undeclared: the key)."""
    return registries().metric(key).label


def method_label(config: dict[str, Any]) -> str:
    """``SGD``, ``Adam``, ``SAM ρ=0.1``, ``AT ℓ∞ ε=8/255``, ``SAM ρ=0.1 + AT ...``."""
    weight, inp = perturbations(config)
    parts = []
    if weight.get("name", "none") != "none":
        name = weight.pop("name")
        shown = [f"ρ={weight.pop('rho'):g}"] if "rho" in weight else []
        shown += [f"{GREEK.get(k, k)}={short(v)}" for k, v in weight.items()
                  if k not in ("label", "adaptive")]
        kind = weight.get("label") or _registered_label(registries().weight_perturbations, name)
        parts.append(" ".join([kind, *shown]))
    if inp.get("name", "none") != "none":
        norm = NORM_SYMBOLS.get(str(inp.get("norm", "linf")), str(inp.get("norm")))
        eps = f" ε={format_eps(float(inp['eps']))}" if "eps" in inp else ""
        kind = _registered_label(registries().input_perturbations, inp.get("name"), "{}-AT")
        parts.append(inp.get("label") or f"{kind} {norm}{eps}")
    if not parts:
        optimizer = (config.get("train", {}).get("optimizer") or {}).get("name", "sgd")
        parts.append(OPTIMIZERS.get(optimizer, optimizer))
    return " + ".join(parts)


def run_label(metrics: dict[str, Any], config: dict[str, Any]) -> str:
    """A row's label: :func:`method_label`, or for a model evaluated by ``samat eval`` its
    ``--label``, else the method of the run it came from marked ``(samat eval)``, else its
    source (``timm:resnet18``, a weights file)."""
    evaluated = metrics.get("evaluated")
    if not isinstance(evaluated, dict):
        return method_label(config)
    if evaluated.get("label"):
        return str(evaluated["label"])
    if evaluated.get("kind") == "run":
        return f"{method_label(config)} (samat eval)"
    source = str(evaluated.get("source"))
    return f"{source} (pretrained)" if (config.get("task") or {}).get("pretrained") else source


def _registered_label(registry: Registry, name: Any, default: str = "{}") -> str:
    """The ``label`` registered for perturbation ``name``, else ``default`` filled with the
    name in capitals (``"{}-AT"`` for input perturbations: training on them is AT)."""
    try:
        label = registry.get(name).label
    except SamatError:
        label = None
    return label or default.format(str(name).upper())


def kind_rank(config: dict[str, Any]) -> int:
    """Row order by kind: plain optimizer, weight perturbation, input perturbation, both."""
    weight, inp = (p["name"] != "none" for p in perturbations(config))
    return {(False, False): 0, (True, False): 1, (False, True): 2, (True, True): 3}[
        (weight, inp)]


def natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers by value (``ρ=0.05`` before ``ρ=0.1``)."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text)
    return [(0, float(p)) if i % 2 else (1, p) for i, p in enumerate(parts)]
