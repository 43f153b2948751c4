"""Plugins use samat's public API only: ``from samat import ...`` of names in ``samat.__all__``
(what a third party can rely on), never ``samat.<module>``; and every exported name resolves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import samat

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_FILES = sorted((ROOT / "plugins").rglob("*.py")) + sorted((ROOT / "examples").rglob("*.py"))


def internal_imports(source: str) -> list[tuple[int, str]]:
    """``(line, import)`` for each import of samat in ``source`` other than ``from samat
    import`` of exported names."""
    found = []
    for node in ast.walk(ast.parse(source)):
        bad: list[str] = []
        if isinstance(node, ast.Import):
            bad = [f"import {a.name}" for a in node.names if a.name.startswith("samat.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("samat."):
                bad = [f"from {node.module} import {', '.join(a.name for a in node.names)}"]
            elif node.module == "samat":
                bad = [f"from samat import {a.name}" for a in node.names
                       if a.name not in samat.__all__]
        found += [(node.lineno, b) for b in bad]
    return sorted(found)


def test_plugin_files_are_found() -> None:
    assert any(p.name == "task.py" and "samat_toy" in p.parts for p in PLUGIN_FILES)
    assert any("samat_example" in p.parts for p in PLUGIN_FILES)


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(path: Path) -> None:
    found = internal_imports(path.read_text(encoding="utf-8"))
    where = path.relative_to(ROOT)
    assert not found, "import these from samat (names in samat.__all__) instead:\n" + "\n".join(
        f"{where}:{line}: {statement}" for line, statement in found)


def test_internal_imports_are_detected() -> None:
    source = ("import samat\nfrom samat import Task\nimport samat.registry\n"
              "def f():\n    from samat.errors import SamatError\n"
              "from samat import unpickle\nfrom samat_toy import theory\n")
    assert internal_imports(source) == [
        (3, "import samat.registry"), (5, "from samat.errors import SamatError"),
        (6, "from samat import unpickle")]


@pytest.mark.parametrize("name", samat.__all__)
def test_every_export_resolves(name: str) -> None:
    assert getattr(samat, name) is not None
