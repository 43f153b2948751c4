"""Plugin discovery (entry-point group ``samat``) and the registries the plugins fill.

Built-in plugins load through the same entry points as third-party ones. A plugin that fails to
import or to register is recorded with its error and skipped; nothing else breaks.
``SAMAT_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point name.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pluggy

from samat import hookspecs
from samat.registry import Registry

ENTRY_POINT_GROUP = "samat"
DISABLE_ENV = "SAMAT_DISABLE_PLUGINS"

REGISTRATION_HOOKS = {
    "tasks": ("samat_register_tasks", "task"),
    "attacks": ("samat_register_attacks", "attack"),
    "weight_perturbations": ("samat_register_weight_perturbations", "weight perturbation"),
    "input_perturbations": ("samat_register_input_perturbations", "input perturbation"),
}


@dataclass
class PluginInfo:
    """What ``samat plugins`` shows for one plugin."""

    name: str
    version: str | None = None
    source: str = ""
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    disabled: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "hooks": self.hooks,
            "error": self.error,
            "disabled": self.disabled,
        }


@dataclass
class Registries:
    tasks: Registry
    attacks: Registry
    weight_perturbations: Registry
    input_perturbations: Registry


class _State:
    pm: pluggy.PluginManager | None = None
    infos: dict[str, PluginInfo] = {}
    registries: Registries | None = None


def disabled_plugins() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager with every loadable ``samat`` entry point registered."""
    if _State.pm is None:
        pm = pluggy.PluginManager("samat")
        pm.add_hookspecs(hookspecs)
        infos: dict[str, PluginInfo] = {}
        blocked = disabled_plugins()
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in infos:  # the same distribution seen twice on sys.path
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                version=dist.version if dist else None,
                source=f"{dist.metadata['Name'] if dist else '?'}: {ep.value}",
            )
            infos[ep.name] = info
            if ep.name in blocked:
                info.disabled = True
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin must not break samat
                info.error = _describe_error(exc)
                continue
            info.hooks = sorted(h.name for h in pm.get_hookcallers(pm.get_plugin(ep.name)) or [])
        _State.pm, _State.infos = pm, infos
    return _State.pm


def register_plugin(plugin: object, name: str) -> None:
    """Register an in-process plugin (tests, notebooks); registries are rebuilt on next use."""
    pm = plugin_manager()
    pm.register(plugin, name=name)
    _State.infos[name] = PluginInfo(
        name=name,
        source="registered in-process",
        hooks=sorted(h.name for h in pm.get_hookcallers(plugin) or []),
    )
    _State.registries = None


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`."""
    pm = plugin_manager()
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    _State.infos.pop(name, None)
    _State.registries = None


def reset() -> None:
    """Forget everything loaded; the next call rediscovers entry points (used by tests)."""
    _State.pm, _State.infos, _State.registries = None, {}, None


def plugin_infos() -> list[PluginInfo]:
    """Every discovered plugin, including disabled ones and those that failed to load."""
    registries()  # registration errors are recorded on the infos
    return [_State.infos[k] for k in sorted(_State.infos)]


def registries() -> Registries:
    """The registries filled by every loaded plugin's registration hooks."""
    if _State.registries is None:
        pm = plugin_manager()
        built: dict[str, Registry] = {}
        for attr, (hook_name, kind) in REGISTRATION_HOOKS.items():
            registry = Registry(kind)
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                register = partial(registry.register, plugin=impl.plugin_name)
                try:
                    impl.function(register=register)
                except Exception as exc:
                    info = _State.infos.setdefault(impl.plugin_name, PluginInfo(impl.plugin_name))
                    info.error = f"{hook_name} failed: {_describe_error(exc)}"
            built[attr] = registry
        _State.registries = Registries(**built)
    return _State.registries


def call_result_hooks(metrics: dict[str, Any], run_dir: str) -> None:
    """Run every plugin's ``samat_on_result``; one that raises is logged, not fatal."""
    for impl in plugin_manager().hook.samat_on_result.get_hookimpls():
        try:
            impl.function(metrics=metrics, run_dir=run_dir)
        except Exception as exc:
            logging.getLogger("samat").warning(
                "plugin '%s': samat_on_result failed: %s", impl.plugin_name, _describe_error(exc)
            )


def call_report_plot_hooks(runs: list[Any], out_dir: Path) -> list[Path]:
    """Every plugin's ``samat_report_plots``; the paths they wrote. A failing plugin is
    logged, not fatal (the tables are still the report)."""
    written: list[Path] = []
    for impl in plugin_manager().hook.samat_report_plots.get_hookimpls():
        try:
            written += [Path(p) for p in impl.function(runs=runs, out_dir=str(out_dir)) or []]
        except Exception as exc:
            logging.getLogger("samat").warning(
                "plugin '%s': samat_report_plots failed: %s", impl.plugin_name,
                _describe_error(exc)
            )
    return written


def plugin_versions() -> dict[str, str | None]:
    return {i.name: i.version for i in plugin_infos() if not i.error and not i.disabled}
