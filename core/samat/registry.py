"""Name -> factory registries with descriptions, listing and "did you mean" errors.

A name registered more than once (by two plugins, or twice by one) is a *conflict*: no
registration of it is usable, whatever the order they came in, and :meth:`Registry.get` raises
a :class:`SamatError` naming every plugin involved. Every other name stays usable.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from samat.errors import SamatError, UnknownNameError
from samat.names import unknown_name_message


@dataclass
class Entry:
    """One registered factory, given directly or as a lazy ``"module:attribute"`` path (or a
    declared value, such as a metric's :class:`samat.plugins.MetricInfo`)."""

    name: str
    target: Any
    description: str
    plugin: str
    example: dict[str, Any] = field(default_factory=dict)  # builds a small instance (tests)
    label: str | None = None  # how reports name a method trained with it
    environment: tuple[str, ...] = ()  # task parameters that do not define the experiment
    conflict: str | None = None  # why the name is unusable (registered more than once)
    model_builder: Callable[..., Any] | str | None = None  # a task's model from model.json
    _loaded: Callable[..., Any] | None = field(default=None, repr=False)

    @property
    def factory(self) -> Callable[..., Any]:
        """The factory, importing it first if it was registered as a path."""
        if self.conflict is not None:
            raise SamatError(self.conflict)
        if self._loaded is None:
            self._loaded = self._resolve(self.target)
        return self._loaded

    @property
    def model(self) -> Callable[..., Any] | None:
        """The task's ``model_builder`` (imported if registered as a path), None if it has none."""
        if self.conflict is not None:
            raise SamatError(self.conflict)
        return None if self.model_builder is None else self._resolve(self.model_builder)

    def _resolve(self, target: Any) -> Any:
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise SamatError(
                f"'{self.name}' (plugin '{self.plugin}') cannot be loaded from "
                f"{target}: {type(exc).__name__}: {exc}; reinstall or disable the "
                f"plugin (SAMAT_DISABLE_PLUGINS={self.plugin})"
            ) from None
        return obj


class Registry:
    """A named collection of factories of one kind (task, attack, perturbation, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._conflicts: dict[str, list[Entry]] = {}  # name -> every registration, in order

    def register(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        description: str = "",
        *,
        example: Mapping[str, Any] | None = None,
        label: str | None = None,
        environment: tuple[str, ...] = (),
        model_builder: Callable[..., Any] | str | None = None,
        plugin: str = "?",
    ) -> None:
        """Add ``factory`` (a callable or a lazy ``"module:attribute"`` path) under ``name``,
        with the metadata :class:`samat.hookspecs.Register` documents.

        Without ``description`` the factory's first docstring line is used (paths are imported
        only when used, so give them a description). Registering a name again does not raise:
        it makes the name a conflict (see :meth:`conflicts`) that :meth:`get` reports.
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if not description and not isinstance(factory, str):
            lines = (getattr(factory, "__doc__", None) or "").strip().splitlines()
            description = lines[0] if lines else ""
        entry = Entry(name, factory, description, plugin, dict(example or {}), label,
                      tuple(environment), model_builder=model_builder)
        if name in self._conflicts:
            self._conflicts[name].append(entry)
        elif name in self._entries:
            self._conflicts[name] = [self._entries.pop(name), entry]
        else:
            self._entries[name] = entry

    def conflicts(self) -> dict[str, list[str]]:
        """Each name registered more than once, with the registering plugins in order."""
        return {n: [e.plugin for e in self._conflicts[n]] for n in sorted(self._conflicts)}

    def conflict_message(self, name: str) -> str:
        """Why the conflicting ``name`` is unusable and which ``SAMAT_DISABLE_PLUGINS`` fixes it."""
        plugins = list(dict.fromkeys(e.plugin for e in self._conflicts[name]))
        if len(plugins) == 1:
            return (f"{self.kind} '{name}' is registered more than once by plugin '{plugins[0]}'; "
                    f"fix the plugin or disable it with SAMAT_DISABLE_PLUGINS={plugins[0]}")
        quoted = [f"'{p}'" for p in plugins]
        listed = f"{', '.join(quoted[:-1])} and {quoted[-1]}"
        if len(plugins) == 2:
            fix = f"disable one with SAMAT_DISABLE_PLUGINS={plugins[1]} (or ={plugins[0]})"
        else:
            fix = f"disable all but one, e.g. SAMAT_DISABLE_PLUGINS={','.join(plugins[1:])}"
        return f"{self.kind} '{name}' is registered by plugins {listed}; {fix}"

    def get(self, name: str) -> Entry:
        """The entry for ``name``; a :class:`SamatError` if several plugins registered it, an
        :class:`UnknownNameError` suggesting close names if none did."""
        if isinstance(name, str) and name in self._conflicts:
            raise SamatError(self.conflict_message(name))
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        """Every registered name, conflicting ones included."""
        return sorted([*self._entries, *self._conflicts])

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._conflicts

    def __iter__(self) -> Iterator[Entry]:
        """Entries by name; a conflicting name is one unusable entry whose ``plugin`` reads
        ``conflict: a, b`` (its ``factory`` raises the :meth:`get` error)."""
        return iter(self._entries.get(n) or self._conflict_entry(n) for n in self.names())

    def __len__(self) -> int:
        return len(self._entries) + len(self._conflicts)

    def _conflict_entry(self, name: str) -> Entry:
        plugins = [e.plugin for e in self._conflicts[name]]
        fix = self.conflict_message(name).partition("; ")[2]
        return Entry(name, "", f"unusable: {fix}", f"conflict: {', '.join(plugins)}",
                     conflict=self.conflict_message(name))

