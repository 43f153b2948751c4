"""Name -> factory registries with descriptions, listing and "did you mean" errors."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from samat.errors import SamatError, UnknownNameError


@dataclass
class Entry:
    """One registered factory, given directly or as a lazy ``"module:attribute"`` path."""

    name: str
    target: Callable[..., Any] | str
    description: str
    plugin: str
    _loaded: Callable[..., Any] | None = field(default=None, repr=False)

    @property
    def factory(self) -> Callable[..., Any]:
        """The factory, importing it first if it was registered as a path."""
        if self._loaded is None:
            if isinstance(self.target, str):
                module, _, attr = self.target.partition(":")
                try:
                    obj: Any = importlib.import_module(module)
                    for part in attr.split("."):
                        obj = getattr(obj, part)
                except (ImportError, AttributeError) as exc:
                    raise SamatError(
                        f"'{self.name}' (plugin '{self.plugin}') cannot be loaded from "
                        f"{self.target}: {type(exc).__name__}: {exc}; reinstall or disable the "
                        f"plugin (SAMAT_DISABLE_PLUGINS={self.plugin})"
                    ) from None
                self._loaded = obj
            else:
                self._loaded = self.target
        return self._loaded


class Registry:
    """A named collection of factories of one kind (task, attack, perturbation, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        description: str = "",
        *,
        plugin: str = "?",
    ) -> None:
        """Add ``factory`` (a callable or a lazy ``"module:attribute"`` path) under ``name``.

        A name may be registered once. Without ``description`` the factory's first docstring line
        is used (paths are imported only when used, so give them a description).
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            other = self._entries[name].plugin
            raise SamatError(
                f"{self.kind} '{name}' is registered twice (plugins '{other}' and '{plugin}'); "
                f"disable one with SAMAT_DISABLE_PLUGINS={plugin}"
            )
        if not description and not isinstance(factory, str):
            lines = (getattr(factory, "__doc__", None) or "").strip().splitlines()
            description = lines[0] if lines else ""
        self._entries[name] = Entry(name, factory, description, plugin)

    def get(self, name: str) -> Entry:
        """The entry for ``name``, or an :class:`UnknownNameError` suggesting close names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered under ``name``."""
        return self.get(name).factory(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


def unknown_name_message(kind: str, name: object, available: list[str]) -> str:
    """``Unknown attack 'pgdd'. Did you mean: pgd? Available: fgsm, pgd``."""
    close = difflib.get_close_matches(str(name), available, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    listed = ", ".join(available) if available else "(none registered)"
    return f"Unknown {kind} '{name}'.{hint} Available: {listed}"
