from __future__ import annotations

import pytest

from samat.errors import SamatError, UnknownNameError
from samat.registry import Registry, unknown_name_message


def make() -> Registry:
    registry = Registry("attack")
    registry.register("pgd", lambda: "pgd", "Projected gradient descent", plugin="core")
    registry.register("fgsm", lambda: "fgsm", "Fast gradient sign", plugin="core")
    return registry


def test_unknown_name_suggests_and_lists() -> None:
    with pytest.raises(UnknownNameError) as info:
        make().get("pgdd")
    assert str(info.value) == "Unknown attack 'pgdd'. Did you mean: pgd? Available: fgsm, pgd"


def test_unknown_name_without_close_match() -> None:
    assert unknown_name_message("task", "zzz", ["cifar10"]) == (
        "Unknown task 'zzz'. Available: cifar10"
    )
    assert "(none registered)" in unknown_name_message("task", "x", [])


def test_create_listing_and_membership() -> None:
    registry = make()
    assert registry.create("pgd") == "pgd"
    assert registry.names() == ["fgsm", "pgd"]
    assert [e.name for e in registry] == ["fgsm", "pgd"]
    assert "pgd" in registry and "x" not in registry and len(registry) == 2


def test_duplicate_registration_names_both_plugins() -> None:
    registry = make()
    with pytest.raises(SamatError, match="registered twice.*'core' and 'other'"):
        registry.register("pgd", lambda: None, plugin="other")


def test_lazy_path_is_imported_on_first_use() -> None:
    registry = Registry("thing")
    registry.register("join", "os.path:join", "os.path.join")
    entry = registry.get("join")
    assert entry.description == "os.path.join"
    assert entry.factory("a", "b") == "a/b"


def test_description_defaults_to_docstring_first_line() -> None:
    def factory() -> None:
        """First line.

        More.
        """

    registry = Registry("task")
    registry.register("t", factory)
    assert registry.get("t").description == "First line."


def test_lazy_path_that_does_not_import_is_a_user_error() -> None:
    registry = Registry("task")
    registry.register("gone", "no_such_module_xyz:Task", "missing", plugin="ghost")
    with pytest.raises(SamatError, match=r"'gone' \(plugin 'ghost'\) cannot be loaded from "
                                         r"no_such_module_xyz:Task: ModuleNotFoundError"):
        _ = registry.get("gone").factory
