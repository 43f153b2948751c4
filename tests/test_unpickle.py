"""samat.unpickle: data loads, every other global is refused before it is imported or called."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from samat.errors import SamatError
from samat.unpickle import ForbiddenGlobalError, UnpickleError, load, loads, python3_name

NUMPY = {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
         ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype")}


class Payload:
    """Unpickling this calls ``function(*args)``, which writes a marker file."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


def _payloads(marker: Path) -> dict[str, Payload]:
    return {
        "builtins.exec": Payload(exec, f"open({str(marker)!r}, 'w').write('x')"),
        "posix.system": Payload(os.system, f"touch {marker}"),
        "pathlib.Path.write_text": Payload(pathlib.Path.write_text, marker, "x"),
    }


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_data_needs_no_global(tmp_path: Path, protocol: int) -> None:
    value = {"a": [1, 2.5, None, True], b"b": ("x", b"\x00\xff"), 3: {"nested": []}}
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    assert load(path) == value
    with path.open("rb") as stream:
        assert load(stream) == value


@pytest.mark.parametrize("protocol", [2, 5])
def test_allowed_globals_load_with_python2_names_mapped(protocol: int) -> None:
    table = defaultdict(dict, {1: {2: 0.5}})
    data = pickle.dumps(table, protocol=protocol)  # protocol 2 says __builtin__.dict
    result = loads(data, {("collections", "defaultdict"), ("builtins", "dict")})
    assert result == table and result.default_factory is dict
    assert python3_name("__builtin__", "dict") == ("builtins", "dict")
    assert python3_name("copy_reg", "_reconstructor") == ("copyreg", "_reconstructor")
    with pytest.raises(ForbiddenGlobalError, match="'builtins.dict'") as info:
        loads(data, {("collections", "defaultdict")})
    assert info.value.refused == ("builtins", "dict")


@pytest.mark.parametrize("protocol", [2, 5])
def test_numpy_arrays_with_an_allowlist(protocol: int) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    result = loads(pickle.dumps({"data": array}, protocol=protocol), NUMPY)
    assert result["data"].dtype == np.uint8 and np.array_equal(result["data"], array)
    with pytest.raises(ForbiddenGlobalError, match="numpy"):
        loads(pickle.dumps(array, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("refused", list(_payloads(Path("m"))))
def test_payloads_are_refused_and_never_run(tmp_path: Path, protocol: int, refused: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    payload = _payloads(marker)[refused]
    if refused == "posix.system" and os.name != "posix":
        pytest.skip("os.system is nt.system here")
    path.write_bytes(pickle.dumps({"data": [1, payload]}, protocol=protocol))
    with pytest.raises(ForbiddenGlobalError) as info:
        load(path, NUMPY | {("builtins", "dict")}, hint="download it again")
    message = str(info.value)
    assert not marker.exists()
    assert "\n" not in message and message.startswith(f"{path}: refused to unpickle '")
    assert "may be malicious" in message and message.endswith("; download it again")
    assert isinstance(info.value, SamatError) and info.value.source == str(path)
    if protocol < 4 and refused == "pathlib.Path.write_text":
        refused = "builtins.getattr"  # protocol 2 pickles getattr(Path, "write_text")
    assert f"'{refused}'" in message and ".".join(info.value.refused) == refused
    pickle.loads(path.read_bytes())  # the same file does run code with plain pickle
    assert marker.exists()


def test_refused_module_is_not_even_imported() -> None:
    assert "antigravity" not in sys.modules  # importing it opens a web browser
    with pytest.raises(ForbiddenGlobalError, match="'antigravity.fly'"):
        loads(b"cantigravity\nfly\n.", what="sky.pkl")
    assert "antigravity" not in sys.modules


def test_object_array_elements_are_restricted_too(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    array = np.array([1, Payload(exec, f"open({str(marker)!r}, 'w')")], dtype=object)
    with pytest.raises(ForbiddenGlobalError, match="'builtins.exec'"):
        loads(pickle.dumps(array, protocol=2), NUMPY)
    assert not marker.exists()


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    cases = {
        "truncated.pkl": pickle.dumps({"a": list(range(100))})[:-5],
        "text.pkl": b"just some text\nover lines\n",
        "empty.pkl": b"",
        "persistent.pkl": b"\x80\x02X\x01\x00\x00\x00aQ.",  # a persistent id
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UnpickleError, match="not a readable pickle") as info:
            load(tmp_path / name, what=f"key: {name}", hint="fix it")
        message = str(info.value)
        assert message.startswith(f"key: {name}: ") and message.endswith("; fix it")
        assert "\n" not in message and not isinstance(info.value, ForbiddenGlobalError)
    with pytest.raises(UnpickleError, match="absent.pkl: cannot read .*FileNotFoundError"):
        load(tmp_path / "absent.pkl")


def test_wrong_arguments_to_an_allowed_global_are_an_unpickle_error() -> None:
    data = pickle.dumps(Payload(np.dtype, "no such dtype"), protocol=2)
    with pytest.raises(UnpickleError, match="<bytes>: not a readable pickle .*TypeError"):
        loads(data, NUMPY)


def test_stream_is_named_by_its_name(tmp_path: Path) -> None:
    stream = io.BytesIO(b"cos\nsystem\n.")
    stream.name = "upload.bin"
    with pytest.raises(ForbiddenGlobalError, match="^upload.bin: refused .*'os.system'"):
        load(stream)
