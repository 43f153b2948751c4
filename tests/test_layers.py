"""The house's floors: which modules of ``samat`` may import which (docs/design.md).

Every ``import`` in core/samat is read (function-local ones included, ``TYPE_CHECKING`` ones
excluded); an import may only go to a module of a floor its own floor may use, and no set of
modules may import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core" / "samat"

FLOORS = {
    "foundation": {"errors", "atomic", "gitinfo", "lifeline", "seeding", "unpickle", "names",
                   "interrupts", "packaged",
                   "checks", "figures"},
    "contract": {"interfaces", "hookspecs", "events"},
    "library": {"batchnorm", "perturb", "weight", "step", "data", "precision", "schedules",
                "registry", "plugins", "builtin", "recipe", "factories", "locking", "results",
                "distributed", "probe", "testing", "export", "measures", "tracking"},
    "runtime": {"train", "runner", "best", "evaluation", "model_eval"},
    "reporting": {"report"},
    "orchestration": {"sweep"},
    "commands": {"cli", "completion", "launch", "__main__", "__init__"},
}
MAY_USE = {
    "foundation": {"foundation"},
    "contract": {"foundation"},
    "library": {"foundation", "contract", "library"},
    "runtime": {"foundation", "contract", "library", "runtime"},
    "reporting": {"foundation", "contract", "library", "reporting"},
    "orchestration": {"foundation", "contract", "library", "runtime", "reporting",
                      "orchestration"},
    "commands": set(FLOORS),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> str:
    top = module.split(".")[1] if module.count(".") else "__init__"
    for name, members in FLOORS.items():
        if top in members:
            return name
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and docs/design.md)")


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path) -> list[tuple[str, int]]:
    """``samat`` modules imported by ``path`` at run time, with their line numbers."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names if a.name.startswith("samat"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "samat":
            if node.module == "samat":  # `from samat import distributed` names modules
                found.extend((f"samat.{a.name}", node.lineno) for a in node.names
                             if (CORE / a.name).is_dir() or (CORE / f"{a.name}.py").is_file())
            else:
                found.append((node.module, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


MODULES = {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _ in imports(path):
            while target not in MODULES and "." in target:  # a name inside a module
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != module:
                edges[module].add(target)
    return edges


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_floors(module: str) -> None:
    own = floor(module)
    for target, line in imports(MODULES[module]):
        if target == "samat":
            continue
        assert floor(target) in MAY_USE[own], (
            f"{MODULES[module].name}:{line}: {module} ({own}) imports {target} "
            f"({floor(target)}); the {own} floor may use only {sorted(MAY_USE[own])}")


def test_no_import_loops() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    assert not loops, f"modules importing each other in a circle: {loops}"


def test_the_contract_imports_nothing_of_samat_but_its_errors() -> None:
    for module in ("samat.interfaces", "samat.hookspecs"):
        assert {t for t, _ in imports(MODULES[module])} <= {"samat.errors"}, module
