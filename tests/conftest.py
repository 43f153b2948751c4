"""Shared fixtures: a fresh plugin state per test and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from samat import locking, plugins

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
