"""The recipes shipped with samat, by name: ``cifar10/sam`` is ``recipes/cifar10/sam.yaml``.

``samat/recipes`` is, in the source checkout, a symlink to the repository's ``recipes/``; building
the wheel follows it, so an installed samat holds the same files there (package data, like every
``*.yaml`` of the package). Files under a directory or with a name that starts with ``_``
(``recipes/_shared/``, ``recipes/cifar10/_aa_stadv.yaml``) are fragments that recipes extend, not
recipes of their own.
"""

from __future__ import annotations

from pathlib import Path

RECIPES = Path(__file__).resolve().parent / "recipes"
SUFFIX = ".yaml"


def recipes_root() -> Path:
    """The directory of the shipped recipes (the checkout's ``recipes/`` in a checkout)."""
    return RECIPES.resolve()


def is_fragment(relative: Path) -> bool:
    """A file some recipe extends (a part of its path starts with ``_``), not a recipe."""
    return any(part.startswith("_") for part in relative.parts)


def recipe_names() -> list[str]:
    """The names of every shipped recipe, sorted (``cifar10/sam``, ``quickstart``, ...)."""
    root = recipes_root()
    return sorted(path.relative_to(root).with_suffix("").as_posix()
                  for path in root.rglob(f"*{SUFFIX}")
                  if not is_fragment(path.relative_to(root)))


def name_of(text: str) -> str:
    """``recipes/cifar10/sam.yaml``, ``cifar10/sam.yaml`` or ``cifar10/sam`` -> ``cifar10/sam``."""
    name = text.replace("\\", "/").removeprefix("./").removeprefix("recipes/")
    return name.removesuffix(SUFFIX)


def packaged_recipe(text: str, fragments: bool = False) -> Path | None:
    """The shipped recipe ``text`` names (with or without ``recipes/`` and ``.yaml``), if any;
    with ``fragments``, a fragment too (what ``extends:`` may name)."""
    relative = Path(f"{name_of(text)}{SUFFIX}")
    if relative.is_absolute() or ".." in relative.parts:
        return None
    if is_fragment(relative) and not fragments:
        return None
    path = recipes_root() / relative
    return path if path.is_file() else None
