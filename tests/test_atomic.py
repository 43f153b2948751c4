"""Crash-safe writes: unique temporaries, strict JSON, the umask's file mode."""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import pytest
import torch

from samat.atomic import (
    remove_temporaries,
    to_json,
    write_atomic,
    write_atomic_path,
    write_directory,
    write_json,
    write_text,
)


def test_strict_json_has_no_bare_nan_or_infinity(tmp_path: Path) -> None:
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": torch.tensor(2.5),
            "d": {"e": float("nan")}, "f": (1, 2)}
    write_json(tmp_path / "m.json", data)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert loaded == {"a": None, "b": [None, None, 1.5], "c": 2.5, "d": {"e": None},
                      "f": [1, 2]}
    assert to_json({"x": torch.tensor(float("inf"))}) == '{"x": null}'


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    write_text(target, "old")

    def half_then_fail(stream) -> None:
        stream.write(b"new, half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_concurrent_writers_use_their_own_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for _ in range(50):
                write_json(target, {"writer": i, "payload": "x" * 10_000})
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads(target.read_text())["writer"] in range(4)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    write_text(tmp_path / "config.yaml", "a: 1\n")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == 0o666 & ~mask


def test_torch_checkpoints_round_trip(tmp_path: Path) -> None:
    state = {"w": torch.arange(4.0)}
    write_atomic(tmp_path / "c.pt", lambda stream: torch.save(state, stream))
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], state["w"])


def test_remove_temporaries_removes_only_interrupted_writes(tmp_path: Path) -> None:
    (tmp_path / ".last.pt.abc123.partial").write_text("half")
    (tmp_path / ".model.def456.partial").mkdir()  # an interrupted write_directory
    (tmp_path / ".model.def456.partial" / "config.json").write_text("{")
    (tmp_path / "last.pt").write_text("whole")
    (tmp_path / ".samat.lock").write_text("{}")
    remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".samat.lock", "last.pt"]


def test_write_atomic_path_hands_the_writer_a_file_name(tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    write_atomic_path(target, lambda tmp: tmp.write_bytes(b"new"))
    assert target.read_bytes() == b"new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic_path(target, fail)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]


def test_write_directory_replaces_a_whole_directory_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "model"

    def fill(files: dict[str, str]) -> object:
        def write(directory: Path) -> None:
            for name, text in files.items():
                (directory / name).write_text(text)
        return write

    write_directory(target, fill({"a.json": "1", "b.bin": "2"}))
    write_directory(target, fill({"a.json": "3"}))
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a.json": "3"}

    def fail(directory: Path) -> None:
        (directory / "a.json").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_directory(target, fail)
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a.json": "3"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
