"""Shared fixtures: a fresh plugin state per test, core's fixture task, helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from samat import locking, plugins, testing

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    """Every test starts from freshly discovered plugins and leaves none behind."""
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    # run-directory locks of killed processes expire in 2 s instead of 30 (tests kill runs)
    monkeypatch.setenv(locking.HEARTBEAT_ENV, "0.5")
    monkeypatch.setenv(locking.STALE_AFTER_ENV, "2")
    plugins.reset()
    yield
    plugins.reset()


def _run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "samat", *args], cwd=cwd, env=full_env, capture_output=True,
        text=True, timeout=timeout,
    )


@pytest.fixture
def run_cli():
    """``run_cli(*args, cwd=...)``: ``python -m samat ARGS`` in a subprocess, as a user runs it."""
    return _run_cli


@pytest.fixture
def root() -> Path:
    """The repository root (recipes/, examples/, ...)."""
    return ROOT


@pytest.fixture
def fixture_task() -> Iterator[str]:
    """Task ``fixture`` (:class:`samat.testing.FixtureTask`) registered for the test; its name.

    torch runs on one thread meanwhile: on a model this small intra-op threads only add overhead,
    and they stall (tens of ms per BatchNorm call) when other processes load the cores."""
    with one_thread(), testing.fixture_plugin():
        yield testing.TASK_NAME


@pytest.fixture
def fixture_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment in which subprocesses (``samat run``/``sweep``, torchrun workers) know
    task ``fixture``: pass it as ``env=`` to ``run_cli`` or ``subprocess``."""
    env = testing.fixture_env(tmp_path_factory.mktemp("fixture_site"))
    return {**env, "OMP_NUM_THREADS": "1"}  # one torch thread, as in the fixture_task fixture


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the ``with`` block."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
