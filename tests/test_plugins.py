from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from samat import cli, hookimpl, plugins
from samat.errors import SamatError
from samat.factories import create_task


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
    from samat.runner import run

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
    from samat.runner import run

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


# --- Plugins installed through entry points: a hand-written *.dist-info on sys.path, the way
# pip leaves an installed distribution (as tests/test_example_plugin.py does).

IMPOSTOR = '''
from samat import hookimpl


@hookimpl
def samat_register_tasks(register):
    register("toy_duality", dict, "An impostor of the built-in task")
    register("impostor_task", dict, "The impostor's own task")
'''
CONFLICT = ("task 'toy_duality' is registered by plugins 'toy' and '{name}'; "
            "disable one with SAMAT_DISABLE_PLUGINS={name} (or =toy)")


@pytest.fixture
def install(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """``install(name=source, ...)``: a distribution whose ``samat`` entry point ``name`` is a
    module with ``source``, visible on sys.path; returns the site directory."""
    package = f"samat_fake_{uuid.uuid4().hex[:8]}"
    site = tmp_path / "site"

    def install(**plugins_source: str) -> Path:
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
        for name, source in plugins_source.items():
            (site / package / f"{name}.py").write_text(textwrap.dedent(source))
        dist_info = site / f"{package}-0.0.1.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: 0.0.1\n"
        )
        (dist_info / "entry_points.txt").write_text(
            "[samat]\n" + "".join(f"{n} = {package}.{n}\n" for n in plugins_source)
        )
        monkeypatch.syspath_prepend(str(site))
        plugins.reset()
        return site

    yield install
    for module in [m for m in sys.modules if m.split(".")[0] == package]:
        del sys.modules[module]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``samat ARGV`` in-process: exit code, stdout, stderr. The ``samat`` logger's handlers
    are swapped out meanwhile: an in-process ``samat run`` leaves one on a stderr that is
    closed by the time a later command logs."""
    logger = logging.getLogger("samat")
    handlers, level = logger.handlers, logger.level
    logger.handlers = []
    capsys.readouterr()
    try:
        code = cli.main(list(argv))
    finally:
        logger.handlers = handlers
        logger.setLevel(level)
    out, err = capsys.readouterr()
    return code, out, err


def _status(table: str, plugin: str) -> str:
    """The ``samat plugins`` row of ``plugin``."""
    rows = [line for line in table.splitlines() if line.split(" ", 1)[0] == plugin]
    assert len(rows) == 1, table
    return rows[0]


@pytest.mark.parametrize(("source", "error"), [
    ("import sys\nsys.exit()\n", "SystemExit(None): the plugin called sys.exit()"),
    ("import sys\nsys.exit(3)\n", "SystemExit(3): the plugin called sys.exit()"),
    ("class Fatal(BaseException):\n    pass\n\n\nraise Fatal('gave up')\n", "Fatal: gave up"),
])
def test_base_exception_at_import_is_recorded_not_fatal(
    install, capsys: pytest.CaptureFixture[str], source: str, error: str
) -> None:
    install(quitter=source)
    code, out, _ = _cli(capsys, "plugins")
    assert code == 0
    assert _status(out, "quitter").endswith(error)
    assert _status(out, "toy").endswith(" ok")
    code, out, _ = _cli(capsys, "plugins", "--json")
    infos = {i["name"]: i for i in json.loads(out)}
    assert code == 0 and infos["quitter"]["error"] == error and infos["quitter"]["hooks"] == []
    code, out, _ = _cli(capsys, "list", "tasks")
    assert code == 0 and "toy_duality" in out
    assert "quitter" not in plugins.plugin_versions()


@pytest.mark.parametrize(("raise_", "error"), [
    ("raise SystemExit(4)", "SystemExit(4): the plugin called sys.exit()"),
    ("raise Fatal('hook gave up')", "Fatal: hook gave up"),
])
def test_base_exception_in_registration_hook_is_recorded_not_fatal(
    install, capsys: pytest.CaptureFixture[str], raise_: str, error: str
) -> None:
    install(quitter=f'''
        from samat import hookimpl


        class Fatal(BaseException):
            pass


        @hookimpl
        def samat_register_tasks(register):
            register("before", dict, "Registered before the hook raised")
            {raise_}
    ''')
    code, out, _ = _cli(capsys, "plugins")
    assert code == 0
    assert _status(out, "quitter").endswith(f"samat_register_tasks failed: {error}")
    assert _status(out, "toy").endswith(" ok")
    tasks = plugins.registries().tasks
    assert tasks.get("before").plugin == "quitter" and tasks.get("toy_duality").plugin == "toy"
    assert "quitter" in plugins.plugin_versions()  # its module loaded; "before" is usable


@pytest.mark.parametrize("where", ["import", "hook"])
def test_ctrl_c_while_plugins_load_still_interrupts(
    install, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    if where == "import":
        install(slow="raise KeyboardInterrupt\n")
    else:
        install(slow='''
            from samat import hookimpl


            @hookimpl
            def samat_register_tasks(register):
                raise KeyboardInterrupt
        ''')
    with pytest.raises(KeyboardInterrupt):
        plugins.plugin_infos()
    code, _, err = _cli(capsys, "list", "tasks")
    assert code == 130 and err == "samat: interrupted\n"


@pytest.mark.parametrize("name", ["impostor", "zz_impostor"])  # loads before / after "toy"
def test_name_taken_from_a_builtin_is_a_conflict_whatever_the_order(
    install, capsys: pytest.CaptureFixture[str], root, tmp_path, monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    install(**{name: IMPOSTOR})
    message = CONFLICT.format(name=name)
    quickstart = str(root / "recipes" / "quickstart.yaml")
    assert _cli(capsys, "validate", quickstart) == (2, "", f"samat: error: {message}\n")
    run_dir = tmp_path / "run"
    code, out, err = _cli(capsys, "run", quickstart, f"output_dir={run_dir}")
    assert (code, out, err.splitlines()[-1]) == (2, "", f"samat: error: {message}")  # after logs
    assert not run_dir.exists()
    assert create_task("impostor_task", a=1) == {"a": 1}  # its other names still work

    code, out, _ = _cli(capsys, "plugins")
    assert code == 0
    assert _status(out, "toy").endswith(message) and _status(out, name).endswith(message)
    assert _status(out, "core").endswith(" ok")
    code, out, _ = _cli(capsys, "plugins", "--json")
    infos = {i["name"]: i for i in json.loads(out)}
    conflict = {"kind": "task", "name": "toy_duality", "plugins": ["toy", name]}
    assert infos["toy"]["conflicts"] == [conflict] and infos[name]["conflicts"] == [conflict]
    assert infos["toy"]["error"] == message and infos["core"]["conflicts"] == []

    code, out, _ = _cli(capsys, "list", "tasks")
    row = next(line for line in out.splitlines() if line.startswith("toy_duality "))
    assert code == 0 and f"conflict: toy, {name}" in row

    monkeypatch.setenv(plugins.DISABLE_ENV, name)
    plugins.reset()
    code, out, _ = _cli(capsys, "validate", quickstart)
    assert code == 0 and "OK — task toy_duality" in out


def test_name_registered_twice_by_one_plugin_is_a_conflict(
    install, capsys: pytest.CaptureFixture[str]
) -> None:
    install(stutter='''
        from samat import hookimpl


        @hookimpl
        def samat_register_attacks(register):
            register("echo", dict, "first")
            register("echo", dict, "second")
            register("fine", dict, "registered once")
    ''')
    message = ("attack 'echo' is registered more than once by plugin 'stutter'; fix the plugin "
               "or disable it with SAMAT_DISABLE_PLUGINS=stutter")
    attacks = plugins.registries().attacks
    with pytest.raises(SamatError) as info:
        attacks.get("echo")
    assert str(info.value) == message
    assert attacks.get("fine").plugin == "stutter"
    code, out, _ = _cli(capsys, "plugins")
    assert code == 0 and _status(out, "stutter").endswith(message)


def test_conflict_disappears_when_the_impostor_is_unregistered() -> None:
    class Impostor:
        @hookimpl
        def samat_register_tasks(self, register):
            register("toy_duality", dict, "An impostor")

    plugins.register_plugin(Impostor(), "impostor")
    try:
        with pytest.raises(SamatError, match="'toy' and 'impostor'"):
            create_task("toy_duality")
        assert {i.name: i for i in plugins.plugin_infos()}["toy"].conflicts
    finally:
        plugins.unregister_plugin("impostor")
    toy = {i.name: i for i in plugins.plugin_infos()}["toy"]
    assert toy.error is None and toy.conflicts == []
    assert plugins.registries().tasks.get("toy_duality").plugin == "toy"


def test_impostor_makes_validate_exit_2_naming_both(install, run_cli, root) -> None:
    """End to end, as a user runs it: an installed impostor of a built-in task."""
    site = install(impostor=IMPOSTOR)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {"PYTHONPATH": path, plugins.DISABLE_ENV: ""}
    proc = run_cli("validate", "recipes/quickstart.yaml", cwd=root, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[-1] == f"samat: error: {CONFLICT.format(name='impostor')}"
