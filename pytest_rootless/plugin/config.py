"""The plugin's markers and ini options, and the options of one container resolved from
them (marker, ini, the ``pytest_rootless_options`` hook)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from ..runtime import options as optionrules

OPTIONS_KEY = pytest.StashKey[optionrules.Options]()


ISOLATED_MARKER = (
    "isolated(**options): run the test in a fresh rootless container (own user, mount, "
    "PID, network, UTS and IPC namespaces over a minimal read-only root). Options: "
    "network, rootfs, hostname, root, timeout, env, env_allow, mounts (see pytest-rootless)."
)


CONTAINER_MARKER = "container(**options): options of the `container` fixture's container."


_INI: dict[str, tuple[str, str]] = {
    "network": ("string", "default network of isolated tests: none or host"),
    "rootfs": ("string", "default root filesystem: minimal or host"),
    "hostname": ("string", "default hostname inside containers"),
    "root": ("bool", "default for root=: uid 0 inside the container"),
    "timeout": ("string", "default timeout of a container, in seconds"),
    "memory": ("string", "default memory limit of a container (bytes, 512M, 2G)"),
    "pids": ("string", "default maximum number of processes in a container"),
    "cpu": ("string", "default CPU-time limit of a container, in seconds"),
    "env": ("linelist", "variables set inside containers, one NAME=value per line"),
    "env_allow": (
        "linelist",
        "only these host variables pass into containers, one name or glob per line "
        "(unset: all of them)",
    ),
    "mounts": ("linelist", "extra read-only binds, one /inside=/host/path per line"),
    "writable": ("linelist", "paths writable inside containers, one per line"),
}


def _ini_options(config: pytest.Config) -> dict[str, Any]:
    """Options set in the ini file, parsed from their text form (unset ones omitted)."""
    raw: dict[str, Any] = {}
    for name, (kind, _) in _INI.items():
        value = config.getini(f"rootless_{name}")
        if kind == "bool":
            if value:
                raw[name] = True
        elif kind == "linelist":
            if not value:
                continue
            if name in ("writable", "env_allow"):
                raw[name] = list(value)
                continue
            pairs = {}
            for line in value:
                key, sep, val = line.partition("=")
                if not sep:
                    raise optionrules.OptionError(
                        f"ini rootless_{name}: {line!r} is not of the form NAME=value"
                    )
                pairs[key.strip()] = val.strip()
            raw[name] = pairs
        elif value:
            raw[name] = _ini_scalar(name, value)
    return raw


def _ini_scalar(name: str, value: str) -> Any:
    if name == "pids":
        try:
            return int(value)
        except ValueError:
            raise optionrules.OptionError(
                f"ini rootless_pids = {value!r}: accepted a positive whole number"
            ) from None
    if name in ("timeout", "cpu"):
        try:
            return float(value)
        except ValueError:
            raise optionrules.OptionError(
                f"ini rootless_{name} = {value!r}: accepted a positive number of seconds"
            ) from None
    return value


def _wants_isolation(item: pytest.Item) -> bool:
    if item.config.getoption("rootless"):
        return True
    return item.get_closest_marker("isolated") is not None


def resolve_options(
    config: pytest.Config,
    item: pytest.Item | None,
    markers: list[pytest.Mark],
    given: Mapping[str, Any] | None = None,
) -> optionrules.Options:
    """ini defaults, then markers (closest first wins per option), then options ``given``
    directly (container_factory), then the hook."""
    raw = _ini_options(config)
    from_markers: dict[str, Any] = {}
    for mark in markers:
        if mark.args:
            raise optionrules.OptionError(
                f"@pytest.mark.{mark.name} takes keyword options only, got {mark.args!r}"
            )
        for key, value in mark.kwargs.items():
            from_markers.setdefault(key, value)
    raw.update(from_markers)
    raw.update(given or {})
    config.hook.pytest_rootless_options(config=config, item=item, options=raw)
    return optionrules.validate(raw)


def require(config: pytest.Config) -> bool:
    return bool(config.getoption("rootless_require") or config.getini("rootless_require"))
