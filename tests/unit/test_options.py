"""Option validation: every bad value is an OptionError naming the option."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_rootless.runtime.options import DEFAULTS, OptionError, Options, parse_size, validate


def test_defaults() -> None:
    assert validate({}) == Options()
    assert set(DEFAULTS) == set(Options.__dataclass_fields__)


def test_valid_values_are_normalised() -> None:
    options = validate(
        {
            "network": "host",
            "rootfs": "host",
            "hostname": "lab-1.example",
            "root": True,
            "timeout": "2.5",
            "env": {"A": "1"},
            "mounts": {"/data": "/usr/share"},
        }
    )
    assert options.timeout == 2.5
    assert options.env == (("A", "1"),)
    assert options.mounts == (("/data", "/usr/share"),)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"network": 3}, "network"),
        ({"network": ""}, "network"),
        ({"network": "my lab"}, "network"),
        ({"network": "-lab"}, "network"),
        ({"rootfs": "nowhere"}, "rootfs"),
        ({"rootfs": None}, "rootfs"),
        ({"hostname": "a/b"}, "hostname"),
        ({"hostname": "x" * 65}, "hostname"),
        ({"hostname": ""}, "hostname"),
        ({"hostname": "-lead"}, "hostname"),
        ({"root": "yes"}, "root"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"memory": "lots"}, "memory"),
        ({"pids": -1}, "pids"),
        ({"pids": 1.5}, "pids"),
        ({"cpu": 0}, "cpu"),
        ({"env": {"A": 1}}, "env"),
        ({"env": ["A=1"]}, "env"),
        ({"env": {"A=B": "1"}}, "env"),
        ({"mounts": {"relative": "/usr"}}, "mounts"),
        ({"mounts": {"/data": "/does/not/exist"}}, "mounts"),
        ({"writable": "/x"}, "writable"),
        ({"env_allow": "PATH"}, "env_allow"),
        ({"env_allow": ["PATH", 3]}, "env_allow"),
        ({"env_allow": [""]}, "env_allow"),
        ({"env_allow": ["A=1"]}, "env_allow"),
        ({"env_allow": {"PATH": "1"}}, "env_allow"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_values_name_the_option(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(OptionError, match=named):
        validate(raw)


def test_env_allow_takes_names_and_globs() -> None:
    assert validate({}).env_allow is None  # by default every variable passes
    assert validate({"env_allow": None}).env_allow is None
    assert validate({"env_allow": ["PATH", "LC_*"]}).env_allow == ("PATH", "LC_*")
    assert validate({"env_allow": ()}).env_allow == ()  # none of the host's


def test_writable_paths_are_kept_as_given() -> None:
    from pathlib import Path

    options = validate({"writable": [".", Path("/var/cache/app")]})
    assert options.writable == (".", "/var/cache/app")
    with pytest.raises(OptionError, match="writable"):
        validate({"writable": [""]})


def test_limits_are_parsed() -> None:
    options = validate({"memory": "512M", "pids": 10, "cpu": 5})
    assert (options.memory, options.pids, options.cpu) == (512 << 20, 10, 5.0)
    assert "memory=512M, pids=10, cpu=5s" in options.describe()


@pytest.mark.parametrize(
    ("text", "size"),
    [("512M", 512 << 20), ("2G", 2 << 30), ("1024", 1024), (4096, 4096), ("1.5K", 1536)],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1", 0, "", True, None])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_size(text)
