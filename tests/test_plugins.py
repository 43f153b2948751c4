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


class ResultListener:
    def __init__(self) -> None:
        self.calls: list[tuple[dict, str]] = []

    @hookimpl
    def samat_on_result(self, metrics, run_dir):
        self.calls.append((metrics, run_dir))


def test_on_result_hook_receives_final_metrics(tmp_path) -> None:
    from samat.run import run

    listener = ResultListener()
    plugins.register_plugin(listener, "listener")
    try:
        recipe = tmp_path / "r.yaml"
        recipe.write_text("task: {name: toy_duality, n: 4, n_train: 64, n_test: 64}\n"
                          "train: {epochs: 1}\n")
        metrics = run(recipe, [f"output_dir={tmp_path / 'run'}"])
    finally:
        plugins.unregister_plugin("listener")
    assert listener.calls == [(metrics, str(tmp_path / "run"))]


class FailingListener:
    @hookimpl
    def samat_on_result(self, metrics, run_dir):
        raise RuntimeError("listener broke")


def test_failing_result_hook_is_logged_not_fatal(tmp_path, caplog) -> None:
    from samat.plugins import call_result_hooks

    listener = ResultListener()
    plugins.register_plugin(FailingListener(), "failing")
    plugins.register_plugin(listener, "listener")
    try:
        call_result_hooks({"a": 1}, "dir")
    finally:
        plugins.unregister_plugin("failing")
        plugins.unregister_plugin("listener")
    assert listener.calls == [({"a": 1}, "dir")]
    assert "plugin 'failing': samat_on_result failed: RuntimeError: listener broke" in caplog.text


def test_every_hook_is_documented_and_called_by_core(root) -> None:
    """datasette-style meta-test: the contract, the docs and the core agree."""
    from samat import hookspecs

    specs = [n for n in dir(hookspecs) if n.startswith("samat_")]
    extending = (root / "docs" / "extending.md").read_text()
    core = "".join(p.read_text() for p in (root / "core" / "samat").glob("*.py")
                   if p.name != "hookspecs.py")
    for name in specs:
        assert name in extending, f"{name} is not documented in docs/extending.md"
        assert name in core, f"{name} is never called by the core"


class RecordingAttack:
    """An attack plugin that writes an artifact where samat tells it to."""

    @hookimpl
    def samat_register_attacks(self, register):
        from samat.interfaces import Attack

        class Noop(Attack):
            name = "noop"

            def __init__(self, model, loss_fn=None) -> None:
                self.model = model

            def __call__(self, x, y):
                return x

            def set_output(self, run_dir, label) -> None:
                (run_dir / f"{label}.txt").write_text("artifact")

        register("noop", Noop, "Returns the input")


def test_attacks_are_told_the_run_directory_and_label(tmp_path) -> None:
    from samat.run import run

    plugins.register_plugin(RecordingAttack(), "recording")
    try:
        recipe = tmp_path / "r.yaml"
        recipe.write_text("task: {name: toy_duality, n: 4, n_train: 64, n_test: 64}\n"
                          "train: {epochs: 1}\neval: {attacks: [{name: noop, label: mine}]}\n")
        metrics = run(recipe, [f"output_dir={tmp_path / 'run'}"])
    finally:
        plugins.unregister_plugin("recording")
    assert (tmp_path / "run" / "mine.txt").read_text() == "artifact"
    assert metrics["attacks"][0]["accuracy"] == metrics["natural"]["accuracy"]
