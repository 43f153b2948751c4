"""Where the ``ray`` launcher's tasks go — ``sweep.launcher.address`` resolved without importing
or starting Ray (see :mod:`samat.sweep.ray_launcher`) — and importing Ray loopback-only when the
address is a loopback one."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samat.errors import SamatError

log = logging.getLogger("samat")

INSTALL = "pip install 'samat[ray]'"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch that puts every Ray process of a single-node Ray on 127.0.0.1 when it is 0."""


@dataclass(frozen=True)
class Target:
    """Where the tasks go: ``address`` for ``ray.init``, a description, whether it is a Ray
    started for the sweep, and whether the driver must use 127.0.0.1."""

    address: str
    shown: str
    local: bool
    loopback: bool


def target(address: str | None, env: dict[str, str] | None = None) -> Target:
    """Where ``address`` (``sweep.launcher.address``) sends the tasks; see the module
    docstring. Nothing is started or imported; a running ``ray start`` is probed with a TCP
    connection."""
    env = dict(os.environ if env is None else env)
    local = Target("local", "a local Ray started for this sweep", True, True)
    if address == "local":
        return local
    if address is None:
        given = env.get("RAY_ADDRESS", "").strip()
        if given:
            return Target(given, f"the Ray cluster at {given} (RAY_ADDRESS)", False,
                          is_loopback(given))
        running = running_cluster(env)
        if running is None:
            return local
        return Target(running, f"the running Ray at {running} (ray start)", False,
                      is_loopback(running))
    if address == "auto":
        found = env.get("RAY_ADDRESS", "").strip() or read_address(env)
        shown = "the Ray cluster found by address auto" + (f" ({found})" if found else "")
        return Target("auto", shown, False, found is not None and is_loopback(found))
    return Target(address, f"the Ray cluster at {address}", False, is_loopback(address))


def address_file(env: dict[str, str]) -> Path:
    """Where ``ray start`` writes the address of the Ray it started (as Ray looks for it)."""
    if "RAY_TMPDIR" in env:
        base = env["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in env:
        base = env["TMPDIR"]
    else:
        base = "/tmp"
    return Path(base) / "ray" / "ray_current_cluster"


def read_address(env: dict[str, str]) -> str | None:
    try:
        text = address_file(env).read_text().strip()
    except OSError:
        return None
    return text or None


def running_cluster(env: dict[str, str], timeout_s: float = 1.0) -> str | None:
    """The address of the Ray ``ray start`` last started here, if it accepts connections
    (``ray stop`` can leave the file behind)."""
    address = read_address(env)
    if address is None:
        return None
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return address
    except (OSError, ValueError):
        return None


def check_reachable(where: Target, timeout_s: float = 5.0) -> None:
    """A one-line error now if nothing accepts a connection at the cluster's address (Ray
    itself would retry for minutes)."""
    if where.local:
        return
    address = where.address
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "").strip() or read_address(dict(os.environ))
        if address is None:
            return  # Ray looks further (Ray processes on this machine) and says what it found
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # not HOST:PORT: Ray's to judge
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise SamatError(f"sweep.launcher.address: nothing answers at {address} ({where.shown}): "
                         f"{why}; start the cluster (ray start --head) or fix the address"
                         ) from None


def is_loopback(address: str) -> bool:
    """Whether ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) is on 127.0.0.1 / ::1."""
    host = address.split("://", 1)[-1].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def import_ray(loopback: bool) -> Any:
    """``import ray``, loopback-only if needed (Ray reads the switch when imported)."""
    if loopback and LOOPBACK_ENV not in os.environ:
        constants = sys.modules.get("ray._private.ray_constants")
        if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
            log.warning("ray: Ray was imported before the sweep started, so this process may "
                        "not use 127.0.0.1; set %s=0 before importing it", LOOPBACK_ENV)
        os.environ[LOOPBACK_ENV] = "0"
        try:
            return _import()
        finally:
            os.environ.pop(LOOPBACK_ENV, None)
    return _import()


def _import() -> Any:
    try:
        import ray
        import ray.exceptions  # noqa: F401
    except ImportError:
        raise SamatError(f"the ray launcher needs Ray: {INSTALL}") from None
    return ray

