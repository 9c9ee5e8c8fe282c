"""A container's spec as data and back (what the host sends a prepared container's
zygote): every field survives the round trip as the type it was, only registered classes
are rebuilt, and the data is plain JSON."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pytest_rootless.protocol.spec_codec import DataclassCodec
from pytest_rootless.runtime import limits
from pytest_rootless.runtime.mountplan import Bind, Plan, Tmpfs
from pytest_rootless.runtime.options import validate
from pytest_rootless.runtime.spec import ContainerSpec, spec_data, spec_from_data


def a_spec() -> ContainerSpec:
    plan = Plan(
        ops=(
            Tmpfs("/tmp", size=1 << 20),
            Bind("/usr", "/usr"),
            Bind("/etc/hosts", "/x", False, True),
        ),
        home="/home/me",
        skeleton="/dev/shm/root-1",
        tmpfs_size=1 << 30,
    )
    return ContainerSpec(
        plan=plan,
        rw_binds=("/tmp/pytest-of-me/t0",),
        outer_uid=1000,
        outer_gid=1000,
        root=True,
        hostname="lab",
        share_network=False,
        env=(("MODE", "ci"),),
        cwd="/project",
        timeout=2.5,
        keep_fds=frozenset({0, 1, 2, 7}),
        trace=False,
        last_cap=40,
        cgroups=("/sys/fs/cgroup/x/cgroup.procs",),
        rlimits=limits.ProcessLimits(data_growth=1 << 29, nproc=9, cpu=1.0),
        report_writes=True,
        env_allow=("PATH", "LC_*"),
    )


def test_a_spec_survives_the_round_trip_through_json() -> None:
    spec = a_spec()
    data = json.loads(json.dumps(spec_data(spec)))
    back = spec_from_data(data, ContainerSpec)
    assert back == spec
    assert type(back.keep_fds) is frozenset
    assert type(back.plan.ops[0]) is Tmpfs
    assert type(back.env[0]) is tuple
    assert type(back.env_allow) is tuple


def test_options_survive_the_round_trip() -> None:
    options = validate({"hostname": "web", "memory": "64M", "env": {"A": "b"}, "writable": ["."]})
    assert spec_from_data(json.loads(json.dumps(spec_data(options))), type(options)) == options


def test_a_plan_is_turned_into_data_once() -> None:
    spec = a_spec()
    first = spec_data(spec)
    again = spec_data(dataclasses.replace(spec, hostname="other"))
    assert isinstance(first, dict)
    assert isinstance(again, dict)
    assert first["plan"] is again["plan"]  # the same data object: the plan's, reused
    assert again["hostname"] == "other"


@dataclasses.dataclass(frozen=True)
class Unknown:
    value: int


def test_only_registered_classes_go_and_come_back() -> None:
    codec = DataclassCodec([Tmpfs])
    with pytest.raises(TypeError, match="Unknown cannot be sent"):
        codec.to_data(Unknown(1))
    with pytest.raises(KeyError):
        codec.from_data({"@": "Unknown", "value": 1}, object)
    with pytest.raises(TypeError, match="not a Bind"):
        codec.from_data(codec.to_data(Tmpfs("/t")), Bind)
    with pytest.raises(TypeError, match="object cannot be sent"):
        codec.to_data(object())


def test_tagged_values_come_back_as_themselves() -> None:
    codec = DataclassCodec([])
    for value in (b"\x00\xffbytes", frozenset({3, 1}), (1, ("a", None)), 1.5, "s", None):
        assert codec.from_data(json.loads(json.dumps(codec.to_data(value))), object) == value
