from __future__ import annotations

import pytest

from samat import hookimpl, plugins
from samat.build import create_task


class Throwaway:
    @hookimpl
    def samat_register_tasks(self, register):
        register("throwaway", dict, "A task that is a dict")


class Broken:
    @hookimpl
    def samat_register_attacks(self, register):
        raise RuntimeError("boom")


def test_builtin_plugins_load_through_entry_points() -> None:
    infos = {i.name: i for i in plugins.plugin_infos()}
    assert {"core", "toy"} <= set(infos)
    assert infos["core"].error is None and infos["core"].version
    assert "samat_register_attacks" in infos["core"].hooks
    assert infos["toy"].source.endswith("samat_toy.plugin")
    regs = plugins.registries()
    assert {"pgd", "fgsm"} <= set(regs.attacks.names())
    assert {"none", "sam", "asam"} <= set(regs.weight_perturbations.names())
    assert "toy_duality" in regs.tasks
    assert regs.tasks.get("toy_duality").plugin == "toy"


def test_throwaway_plugin_registers_and_unregisters() -> None:
    plugins.register_plugin(Throwaway(), "throwaway")
    try:
        assert "throwaway" in plugins.registries().tasks
        assert create_task("throwaway", a=1) == {"a": 1}
        info = {i.name: i for i in plugins.plugin_infos()}["throwaway"]
        assert info.hooks == ["samat_register_tasks"]
    finally:
        plugins.unregister_plugin("throwaway")
    assert "throwaway" not in plugins.registries().tasks


def test_failing_registration_hook_is_recorded_not_fatal() -> None:
    plugins.register_plugin(Broken(), "broken")
    try:
        regs = plugins.registries()
        assert "pgd" in regs.attacks  # the others still registered
        info = {i.name: i for i in plugins.plugin_infos()}["broken"]
        assert info.error == "samat_register_attacks failed: RuntimeError: boom"
    finally:
        plugins.unregister_plugin("broken")


def test_disabled_plugin_is_listed_but_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.DISABLE_ENV, "toy, other")
    plugins.reset()
    infos = {i.name: i for i in plugins.plugin_infos()}
    assert infos["toy"].disabled and infos["toy"].hooks == []
    assert "toy_duality" not in plugins.registries().tasks
    assert "toy" not in plugins.plugin_versions()
