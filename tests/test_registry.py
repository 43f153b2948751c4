from __future__ import annotations

import pytest

from samat.errors import SamatError, UnknownNameError
from samat.names import unknown_name_message
from samat.registry import Registry


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
    assert registry.get("pgd").factory() == "pgd"
    assert registry.names() == ["fgsm", "pgd"]
    assert [e.name for e in registry] == ["fgsm", "pgd"]
    assert "pgd" in registry and "x" not in registry and len(registry) == 2


@pytest.mark.parametrize("order", [("core", "other"), ("other", "core")])
def test_name_registered_by_two_plugins_is_unusable_whoever_comes_first(
    order: tuple[str, str]
) -> None:
    registry = Registry("attack")
    for plugin in order:
        registry.register("pgd", lambda plugin=plugin: plugin, plugin=plugin)
        registry.register(f"{plugin}_only", lambda plugin=plugin: plugin, plugin=plugin)
    first, second = order
    message = (f"attack 'pgd' is registered by plugins '{first}' and '{second}'; "
               f"disable one with SAMAT_DISABLE_PLUGINS={second} (or ={first})")
    with pytest.raises(SamatError) as info:
        registry.get("pgd")
    assert str(info.value) == message and not isinstance(info.value, UnknownNameError)
    with pytest.raises(SamatError, match="is registered by plugins"):
        registry.get("pgd").factory()
    assert registry.get("core_only").factory() == "core"
    assert registry.get("other_only").factory() == "other"
    assert registry.conflicts() == {"pgd": list(order)}
    assert "pgd" in registry and len(registry) == 3
    assert registry.names() == ["core_only", "other_only", "pgd"]
    listed = {e.name: e for e in registry}
    assert listed["pgd"].plugin == f"conflict: {first}, {second}"
    assert listed["pgd"].description.startswith("unusable: disable one with")
    with pytest.raises(SamatError, match="is registered by plugins"):
        _ = listed["pgd"].factory
    assert listed["core_only"].plugin == "core" and listed["core_only"].conflict is None


def test_name_registered_twice_by_one_plugin_is_unusable() -> None:
    registry = make()
    registry.register("fgsm", lambda: "again", plugin="core")
    with pytest.raises(SamatError, match=r"^attack 'fgsm' is registered more than once by plugin "
                                         r"'core'; fix the plugin or disable it with "
                                         r"SAMAT_DISABLE_PLUGINS=core$"):
        registry.get("fgsm")
    assert registry.get("pgd").factory() == "pgd"
    assert registry.conflicts() == {"fgsm": ["core", "core"]}


def test_three_way_conflict_suggests_disabling_all_but_one() -> None:
    registry = make()
    registry.register("pgd", lambda: None, plugin="b")
    registry.register("pgd", lambda: None, plugin="c")
    with pytest.raises(SamatError) as info:
        registry.get("pgd")
    assert str(info.value) == ("attack 'pgd' is registered by plugins 'core', 'b' and 'c'; "
                               "disable all but one, e.g. SAMAT_DISABLE_PLUGINS=b,c")


def test_invalid_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="attack name must be a non-empty string"):
        make().register("", lambda: None)


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
