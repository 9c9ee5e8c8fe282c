"""What a container is, decided on the host before the clone (:class:`ChildSpec`), what
its test process runs (:data:`Payload`), what init needs to start it
(:class:`TestChannels`), and the spec as data for a prepared container's zygote (a
request to it is JSON, never a pickle)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..kernel.syscalls import CloneFlag as NS
from . import limits, mountplan
from .options import Options


@dataclass(frozen=True)
class ChildSpec:
    """Everything the container needs, decided on the host before the clone."""

    plan: mountplan.Plan
    #: Host paths made writable in this container only (bound over the plan's mounts).
    rw_binds: tuple[str, ...]
    outer_uid: int
    outer_gid: int
    root: bool
    hostname: str
    share_network: bool
    env: tuple[tuple[str, str], ...]
    cwd: str
    timeout: float | None
    keep_fds: frozenset[int]
    trace: bool
    last_cap: int
    #: cgroup.procs files init moves itself into (the container's memory/pids limits).
    cgroups: tuple[str, ...] = ()
    #: rlimits of every process of the container (see _limits).
    rlimits: limits.ProcessLimits = field(default_factory=limits.ProcessLimits)
    #: Send the host what the test wrote outside /tmp and HOME (--rootless-report-writes).
    report_writes: bool = False
    #: For a live container (the container fixture): init's end of the control socket.
    #: Init then serves requests to start processes instead of running one test.
    control_fd: int | None = None
    #: On a named network: how to join it (see _network).
    network: Join | None = None


#: The namespaces the container's init is cloned into (the rest come with the inner
#: user namespace, see _init).
CLONE_FLAGS = NS.NEWUSER | NS.NEWNS | NS.NEWPID


Payload = Callable[[int], int]
"""What the test process runs once isolated: gets the result fd, returns an exit status."""


#: Builds what a prepared container's test process runs from the host's description of
#: the test (plain data) and the fd of its ack pipe.
JobPayload = Callable[[dict[str, object], int], Payload]


_T = TypeVar("_T")


_DATA_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ChildSpec,
        mountplan.Plan,
        limits.ProcessLimits,
        Options,
        *typing.get_args(mountplan.Op),
    )
}


#: Plans already turned into data: a plan is made once a session and never changes, and
#: turning its ~60 operations into data each time would cost more than the rest of a
#: request (the plan is kept alive with its data, so its id is not reused).
_PLAN_DATA: dict[int, tuple[mountplan.Plan, object]] = {}


def spec_data(value: object) -> object:
    """``value`` (a ChildSpec, Options, or a part of one) as JSON-ready data."""
    if isinstance(value, mountplan.Plan):
        known = _PLAN_DATA.get(id(value))
        if known is None:
            known = _PLAN_DATA[id(value)] = (value, _dataclass_data(value))
        return known[1]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_data(value)
    if isinstance(value, bytes):
        return {"@bytes": value.hex()}
    if isinstance(value, frozenset):
        return {"@frozenset": sorted(value)}
    if isinstance(value, tuple | list):
        return [spec_data(v) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"{type(value).__name__} cannot be sent to a prepared container")


def _dataclass_data(value: Any) -> object:
    name = type(value).__name__
    if _DATA_TYPES.get(name) is not type(value):
        raise TypeError(f"{name} cannot be sent to a prepared container")
    fields = {
        f.name: spec_data(getattr(value, f.name))
        for f in dataclasses.fields(typing.cast(Any, value))
    }
    return {"@": name, **fields}


def spec_from_data(data: object, cls: type[_T]) -> _T:
    """The inverse of :func:`spec_data`, checked to be a ``cls``."""
    value = _from_data(data)
    if not isinstance(value, cls):
        raise TypeError(f"not a {cls.__name__}")
    return value


def _from_data(data: object) -> object:
    if isinstance(data, list):
        return tuple(_from_data(v) for v in data)
    if not isinstance(data, dict):
        return data
    if "@bytes" in data:
        return bytes.fromhex(data["@bytes"])
    if "@frozenset" in data:
        return frozenset(data["@frozenset"])
    cls = _DATA_TYPES[data["@"]]
    return cls(**{k: _from_data(v) for k, v in data.items() if k != "@"})


@dataclass(frozen=True)
class TestChannels:
    """What init needs to start the test: the channel to the host, the crash channel, and
    what the test process runs. Known at the clone, or (a prepared container) only once
    the test's turn comes (see zygote_main)."""

    result_fd: int
    crash_fd: int
    payload: Payload
    #: More fds the test process keeps (a prepared container's ack pipe).
    keep: frozenset[int] = frozenset()
    #: (fd, number): where the test process first moves each fd (see prepared_main).
    moves: tuple[tuple[int, int], ...] = ()

    def number(self, fd: int) -> int:
        """The number ``fd`` has in the test process."""
        return dict(self.moves).get(fd, fd)


Start = Callable[[], TestChannels | None]


@dataclass(frozen=True)
class Join:
    """What a container's init needs to join a network (part of its ChildSpec)."""

    network: str
    index: int
    #: The holder's user namespace: the relay setns()es into it before cloning init.
    userns_fd: int
    #: Init's end of a socket to the holder.
    channel_fd: int
    hosts_file: str
    address: str  # "198.18.0.2/24"
    address6: str | None
    #: The holder's own steps, shown in the trace of the first container to join.
    holder_trace: tuple[str, ...] = ()
