"""The one place that suggests names: ``Unknown attack 'pgdd'. Did you mean: pgd? Available: ...``.

Suggestions are up to 3 of the valid names whose ``difflib`` similarity to the given one is at
least 0.5.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """``" Did you mean: pgd?"`` naming the ``choices`` close to ``name``; ``""`` if none is."""
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def unknown_name_message(kind: str, name: object, available: Sequence[str]) -> str:
    """``Unknown attack 'pgdd'. Did you mean: pgd? Available: fgsm, pgd``."""
    listed = ", ".join(available) if available else "(none registered)"
    return f"Unknown {kind} '{name}'.{did_you_mean(name, available)} Available: {listed}"


def unknown_key_message(
    path: str, key: str, valid: Sequence[str], also: Sequence[str] = ()
) -> str:
    """``Unknown key 'train.epoch'. Did you mean: epochs? Valid keys here: epochs, ...``.

    ``key`` is looked for under ``path`` (``""``: the top level) and suggested from ``valid``;
    the keys listed are ``also`` (valid too, never suggested), then ``valid``.
    """
    where = f"{path}.{key}" if path else key
    listed = ", ".join([*also, *valid])
    return f"Unknown key '{where}'.{did_you_mean(key, valid)} Valid keys here: {listed}"
