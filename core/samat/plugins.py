"""Plugin discovery (entry-point group ``samat``) and the registries the plugins fill.

Built-in plugins load through the same entry points as third-party ones. A plugin that fails to
import or to register is recorded with its error and skipped; nothing else breaks. "Fails" is
raising any ``BaseException`` (``SystemExit`` from a ``sys.exit()`` and custom subclasses
included) but one: ``KeyboardInterrupt`` deliberately propagates, so a user's Ctrl-C while
plugins load (a slow import) still interrupts samat (``samat: interrupted``, exit 130).

A name registered by two plugins (or twice by one) is a conflict, not settled by load order:
that name is unusable (using it is an error naming both plugins), every other name of both
plugins still works, and the conflict is shown on both plugins in ``samat plugins``.
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
from samat.errors import SamatError
from samat.registry import Registry

ENTRY_POINT_GROUP = "samat"
DISABLE_ENV = "SAMAT_DISABLE_PLUGINS"

REGISTRATION_HOOKS = {
    "tasks": ("samat_register_tasks", "task"),
    "attacks": ("samat_register_attacks", "attack"),
    "weight_perturbations": ("samat_register_weight_perturbations", "weight perturbation"),
    "input_perturbations": ("samat_register_input_perturbations", "input perturbation"),
    "metrics": ("samat_register_metrics", "metric"),
    "measures": ("samat_register_measures", "measure"),
    "loggers": ("samat_register_loggers", "logger"),
}


@dataclass(frozen=True)
class MetricInfo:
    """A declared result key: its title in reports and which direction is better."""

    name: str
    label: str
    higher_is_better: bool = True


@dataclass
class PluginInfo:
    """What ``samat plugins`` shows for one plugin.

    ``error`` is every problem in one line: the load error, failed registration hooks and the
    name conflicts (each also in ``conflicts`` as ``{"kind", "name", "plugins"}``).
    """

    name: str
    version: str | None = None
    source: str = ""
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    disabled: bool = False
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    builtin: bool = False  # from samat's own distribution: named first in conflict messages
    load_error: str | None = None  # why the module did not load; kept when registries rebuild

    def add_error(self, message: str) -> None:
        """Append ``message`` to ``error``."""
        self.error = f"{self.error}; {message}" if self.error else message

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "hooks": self.hooks,
            "error": self.error,
            "disabled": self.disabled,
            "conflicts": self.conflicts,
        }


@dataclass
class Registries:
    tasks: Registry
    attacks: Registry
    weight_perturbations: Registry
    input_perturbations: Registry
    metrics: Registry  # entries' factory is the MetricInfo itself
    measures: Registry
    loggers: Registry

    def metric(self, name: str) -> MetricInfo:
        """What plugins declared about the result key ``name`` (undeclared or conflicting:
        the key itself as title, higher is better)."""
        if name in self.metrics:
            try:
                return self.metrics.get(name).factory
            except SamatError:
                pass
        return MetricInfo(name, name)


class _State:
    pm: pluggy.PluginManager | None = None
    infos: dict[str, PluginInfo] = {}
    registries: Registries | None = None


def disabled_plugins() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def _describe_error(exc: BaseException) -> str:
    """``Type: message`` (just ``Type`` without a message); says so when it is ``sys.exit``."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}): the plugin called sys.exit()"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
            dist_name = dist.metadata["Name"] if dist else "?"
            info = PluginInfo(
                name=ep.name,
                version=dist.version if dist else None,
                source=f"{dist_name}: {ep.value}",
                builtin=dist_name == "samat",
            )
            infos[ep.name] = info
            if ep.name in blocked:
                info.disabled = True
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a broken plugin must not break (or exit) samat
                info.error = info.load_error = _describe_error(exc)
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


def _info(name: str) -> PluginInfo:
    return _State.infos.setdefault(name, PluginInfo(name))


def _registration_order(impl: pluggy.HookImpl) -> tuple[bool, str]:
    """samat's own plugins first, then by name: only the order names appear in messages."""
    return (not _info(impl.plugin_name).builtin, impl.plugin_name)


def registries() -> Registries:
    """The registries filled by every loaded plugin's registration hooks.

    Registration errors and name conflicts are (re)recorded on the plugins' infos.
    """
    if _State.registries is None:
        pm = plugin_manager()
        for info in _State.infos.values():
            info.error, info.conflicts = info.load_error, []
        built: dict[str, Registry] = {}
        for attr, (hook_name, kind) in REGISTRATION_HOOKS.items():
            registry = Registry(kind)
            impls = sorted(getattr(pm.hook, hook_name).get_hookimpls(), key=_registration_order)
            for impl in impls:
                register = (partial(_register_metric, registry, impl.plugin_name)
                            if attr == "metrics" else
                            partial(registry.register, plugin=impl.plugin_name))
                try:
                    impl.function(register=register)
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # what it registered before raising stays
                    _info(impl.plugin_name).add_error(f"{hook_name} failed: {_describe_error(exc)}")
            for name, owners in registry.conflicts().items():
                message = registry.conflict_message(name)
                for owner in dict.fromkeys(owners):
                    info = _info(owner)
                    info.conflicts.append({"kind": kind, "name": name, "plugins": owners})
                    info.add_error(message)
            built[attr] = registry
        _State.registries = Registries(**built)
    return _State.registries


def _register_metric(registry: Registry, plugin: str, name: str, label: str, *,
                     higher_is_better: bool = True) -> None:
    """The :class:`samat.hookspecs.RegisterMetric` callback."""
    registry.register(name, MetricInfo(name, label, bool(higher_is_better)), label,
                      plugin=plugin)


def reference_tables() -> list[dict[str, Any]]:
    """Every plugin's ``samat_reference_results`` tables (each with its ``plugin``); one that
    raises is logged and left out."""
    tables: list[dict[str, Any]] = []
    for impl in plugin_manager().hook.samat_reference_results.get_hookimpls():
        try:
            tables += [{**t, "plugin": impl.plugin_name} for t in impl.function() or []]
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            logging.getLogger("samat").warning(
                "plugin '%s': samat_reference_results failed: %s", impl.plugin_name,
                _describe_error(exc))
    return tables


def call_result_hooks(metrics: dict[str, Any], run_dir: str) -> None:
    """Run every plugin's ``samat_on_result``; one that raises is logged, not fatal."""
    for impl in plugin_manager().hook.samat_on_result.get_hookimpls():
        try:
            impl.function(metrics=metrics, run_dir=run_dir)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # sys.exit() in a plugin must not end samat either
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
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # sys.exit() in a plugin must not end samat either
            logging.getLogger("samat").warning(
                "plugin '%s': samat_report_plots failed: %s", impl.plugin_name,
                _describe_error(exc)
            )
    return written


def plugin_versions() -> dict[str, str | None]:
    """Versions of the plugins whose module loaded (a run may use any name they registered)."""
    return {i.name: i.version for i in plugin_infos() if not i.load_error and not i.disabled}
