"""Container options: one place that parses, validates and defaults them.

Markers, ini defaults and the ``pytest_rootless_options`` hook all produce a plain
mapping; :func:`validate` turns it into a frozen :class:`Options` or raises
:class:`OptionError` naming the option and what it accepts.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

_T = TypeVar("_T")

NAMES: Final = (
    "network",
    "rootfs",
    "hostname",
    "root",
    "timeout",
    "memory",
    "pids",
    "cpu",
    "env",
    "env_allow",
    "mounts",
    "writable",
)

DEFAULTS: Final[Mapping[str, Any]] = {
    "network": "none",
    "rootfs": "minimal",
    "hostname": "sandbox",
    "root": False,
    "timeout": None,
    "memory": None,
    "pids": None,
    "cpu": None,
    "env": {},
    "env_allow": None,
    "mounts": {},
    "writable": [],
}

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62})?)*$")
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


class OptionError(ValueError):
    """A container option has a wrong type or value (a usage error)."""


@dataclass(frozen=True)
class Options:
    """Validated options of one container (docs/options.md says what each one means)."""

    network: str = "none"
    rootfs: str = "minimal"
    hostname: str = "sandbox"
    root: bool = False
    timeout: float | None = None
    memory: int | None = None
    pids: int | None = None
    cpu: float | None = None
    env: tuple[tuple[str, str], ...] = ()
    #: Names or globs of the host's variables that pass into the container (None: all).
    env_allow: tuple[str, ...] | None = None
    mounts: tuple[tuple[str, str], ...] = ()
    writable: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        parts = [f"network={self.network}", f"rootfs={self.rootfs}"]
        if self.root:
            parts.append("root=True")
        if self.timeout is not None:
            parts.append(f"timeout={self.timeout:g}s")
        if self.memory is not None:
            parts.append(f"memory={format_size(self.memory)}")
        if self.pids is not None:
            parts.append(f"pids={self.pids}")
        if self.cpu is not None:
            parts.append(f"cpu={self.cpu:g}s")
        return ", ".join(parts)


def _fail(name: str, value: object, accepted: str) -> OptionError:
    return OptionError(f"rootless option {name}={value!r} is invalid: accepted {accepted}")


def parse_size(value: object) -> int:
    """``512M``, ``2G``, ``1048576`` → bytes."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(value)
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            number = float(match.group(1))
            unit = match.group(2).upper()
            size = int(number * 1024 ** " KMGT".index(unit or " "))
            if size > 0:
                return size
    raise ValueError(value)


def format_size(value: int | None) -> str:
    """536870912 → ``512M``: a size as the user would write it."""
    if value is None:
        return "None"
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def _positive_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(name, value, "a positive number of seconds")
    try:
        number = float(value)
    except ValueError:
        raise _fail(name, value, "a positive number of seconds") from None
    if not math.isfinite(number) or number <= 0:
        raise _fail(name, value, "a positive number of seconds")
    return number


def _string_map(name: str, value: object, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise _fail(name, value, f"a dict of {what}")
    items = []
    for key, val in value.items():
        if not isinstance(key, str) or not isinstance(val, str):
            raise _fail(name, value, f"a dict of {what} (strings only)")
        items.append((key, val))
    return tuple(items)


def refuse_named_network(options: Options) -> None:
    """An isolated test is one container: a named network, which joins the containers
    of one test, has no place there (a usage error, never a silently lone network)."""
    if options.network not in ("none", "host"):
        raise OptionError(
            f"rootless option network={options.network!r}: a named network joins the "
            "containers of one test (the container and container_factory fixtures); an "
            "isolated test is a single container: accepted 'none' or 'host'"
        )


def validate(raw: Mapping[str, Any]) -> Options:
    """Check every option and return the frozen :class:`Options`."""
    unknown = sorted(set(raw) - set(NAMES))
    if unknown:
        raise OptionError(
            f"unknown rootless option(s) {', '.join(unknown)}: accepted {', '.join(NAMES)}"
        )
    values = {**DEFAULTS, **raw}
    return Options(
        network=_network(values["network"]),
        rootfs=_rootfs(values["rootfs"]),
        hostname=_hostname(values["hostname"]),
        root=_flag("root", values["root"]),
        timeout=_optional(_positive_number, "timeout", values["timeout"]),
        memory=_optional(_memory, "memory", values["memory"]),
        pids=_optional(_pids, "pids", values["pids"]),
        cpu=_optional(_positive_number, "cpu", values["cpu"]),
        env=_env(values["env"]),
        env_allow=_optional(_env_allow, "env_allow", values["env_allow"]),
        mounts=_mounts(values["mounts"]),
        writable=_writable(values["writable"]),
    )


def _optional(check: Callable[[str, Any], _T], name: str, value: object) -> _T | None:
    return None if value is None else check(name, value)


def _network(network: Any) -> str:
    if network not in ("none", "host") and (
        not isinstance(network, str) or not _NETWORK.match(network)
    ):
        raise _fail(
            "network",
            network,
            "'none', 'host' or the name of a private network between containers (1-64 "
            "letters, digits, '_', '-' and '.', starting with a letter or digit)",
        )
    return str(network)


def _rootfs(rootfs: Any) -> str:
    if rootfs in ("minimal", "host"):
        return str(rootfs)
    accepted = "'minimal', 'host' or the path of a directory holding a root filesystem"
    if not isinstance(rootfs, (str, os.PathLike)) or not os.fspath(rootfs):
        raise _fail("rootfs", rootfs, accepted)
    if not os.path.isdir(rootfs):
        raise OptionError(
            f"rootless option rootfs={os.fspath(rootfs)!r} is not a directory; accepted {accepted}"
        )
    path = os.path.realpath(rootfs)
    if path == "/":
        raise _fail("rootfs", path, f"{accepted} (other than '/': use 'host')")
    return path


def _hostname(hostname: Any) -> str:
    if not isinstance(hostname, str) or len(hostname) > 64 or not _HOSTNAME.match(hostname):
        raise _fail("hostname", hostname, "a host name of 1-64 letters, digits, '-' and '.'")
    return hostname


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, "True or False")
    return value


def _memory(name: str, value: object) -> int:
    try:
        return parse_size(value)
    except ValueError:
        raise _fail(name, value, "a positive size in bytes or like '512M', '2G'") from None


def _pids(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(name, value, "a positive whole number of processes")
    return value


def _env(value: object) -> tuple[tuple[str, str], ...]:
    env = _string_map("env", value, "variable names to values")
    for key, val in env:
        if not key or "=" in key or "\0" in key or "\0" in val:
            raise _fail("env", value, "variable names without '=' or NUL")
        if key == "HOME":
            raise OptionError(
                "rootless option env: HOME cannot be set, it is always the container's fresh, "
                "empty home directory"
            )
    return env


#: Variables env_allow never filters out: pytest-rootless sets them inside (HOME, always
#: the fresh home) or keeps them only where they name a directory usable inside.
ENV_ALWAYS: Final = ("HOME", "TMPDIR", "PYTEST_DEBUG_TEMPROOT")


def _env_allow(name: str, value: object) -> tuple[str, ...]:
    accepted = "a list of variable names or globs (like 'LC_*'), without '=' or NUL"
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail(name, value, accepted)
    for pattern in value:
        if not isinstance(pattern, str) or not pattern or "=" in pattern or "\0" in pattern:
            raise _fail(name, value, accepted)
    return tuple(value)


def _mounts(value: object) -> tuple[tuple[str, str], ...]:
    mounts = _string_map("mounts", value, "inside paths to host paths")
    for inside, host in mounts:
        if not os.path.isabs(inside) or os.path.normpath(inside) == "/":
            raise _fail("mounts", value, "absolute inside paths other than '/'")
        if not os.path.exists(host):
            raise OptionError(
                f"rootless option mounts: host path {host!r} does not exist; accepted "
                "existing host paths"
            )
    return tuple((os.path.normpath(i), os.path.realpath(h)) for i, h in mounts)


def _writable(writable: object) -> tuple[str, ...]:
    if isinstance(writable, str) or not isinstance(writable, (list, tuple)):
        raise _fail("writable", writable, "a list of paths")
    if not all(isinstance(p, (str, os.PathLike)) and os.fspath(p) for p in writable):
        raise _fail("writable", writable, "a list of paths (strings)")
    return tuple(os.fspath(p) for p in writable)
