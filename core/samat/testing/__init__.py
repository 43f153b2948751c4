"""Helpers for samat's tests and plugin authors' tests: a small task owned by core
(:mod:`samat.testing.fixture`) and the plugin contract as checks
(:mod:`samat.testing.contracts`).

:class:`FixtureTask` is a fast, deterministic classification task, registered as task
``fixture`` by :func:`fixture_plugin` in this process, or by :func:`fixture_env` in every Python
process started with the environment it returns (``samat run`` / ``sweep`` subprocesses,
torchrun workers)::

    from samat.testing import fixture_plugin

    with fixture_plugin():
        samat.run("r.yaml", recipe=recipe_from_dict({"task": {"name": "fixture"}, ...}))

:func:`check_task`, :func:`check_model_export`, :func:`check_input_perturbation`,
:func:`check_attack`, :func:`check_attack_refuses`, :func:`check_weight_perturbation` and
:func:`check_measure` raise
``AssertionError`` where an object breaks the contract of :mod:`samat.interfaces` (samat's
tests/test_contracts.py runs them on every registered entry)::

    check_attack(create_attack("my_attack", model, task=task), model, task)
    check_attack_refuses(create_attack("my_attack", model, task=task, n_classes=11), model,
                         task, "n_classes")
"""

from samat.testing.contracts import (
    check_attack,
    check_attack_refuses,
    check_input_perturbation,
    check_measure,
    check_model_export,
    check_task,
    check_weight_perturbation,
    measure_batches,
    model_state,
    sample_batch,
)
from samat.testing.fixture import (
    EXAMPLE,
    PLUGIN_NAME,
    TASK_NAME,
    FixtureNet,
    FixturePlugin,
    FixtureTask,
    fixture_env,
    fixture_plugin,
    registered,
)

__all__ = ["EXAMPLE", "PLUGIN_NAME", "TASK_NAME", "FixtureNet", "FixturePlugin", "FixtureTask",
           "check_attack", "check_attack_refuses", "check_input_perturbation",
           "check_measure", "check_model_export", "check_task", "check_weight_perturbation",
           "fixture_env", "fixture_plugin", "measure_batches", "model_state", "sample_batch",
           "registered"]
