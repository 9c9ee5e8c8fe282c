"""What a container is, decided on the host before the clone (:class:`ContainerSpec`), what
its test process runs (:data:`Payload`), what init needs to start it
(:class:`TestHandover`), and the spec as data for a prepared container's zygote (a
request to it is JSON, never a pickle)."""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from ..kernel.syscalls import CloneFlag as NS
from ..protocol.spec_codec import DataclassCodec
from . import limits, mountplan
from .options import Options


@dataclass(frozen=True)
class ContainerSpec:
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
    #: rlimits of every process of the container (see runtime.limits).
    rlimits: limits.ProcessLimits = field(default_factory=limits.ProcessLimits)
    #: Send the host what the test wrote outside /tmp and HOME (--rootless-report-writes).
    report_writes: bool = False
    #: For a live container (the container fixture): init's end of the control socket.
    #: Init then serves requests to start processes instead of running one test.
    control_fd: int | None = None
    #: On a named network: how to join it (see runtime.network).
    network: Join | None = None
    #: Names or globs of the host's variables the test process keeps (None: all).
    env_allow: tuple[str, ...] | None = None


#: The namespaces the container's init is cloned into (the rest come with the inner
#: user namespace, see _init).
CLONE_FLAGS = NS.NEWUSER | NS.NEWNS | NS.NEWPID


Payload = Callable[[int], int]
"""What the test process runs once isolated: gets the result fd, returns an exit status."""


#: Builds what a prepared container's test process runs from the host's description of
#: the test (plain data) and the fd of its ack pipe.
PayloadFromJob = Callable[[dict[str, object], int], Payload]


#: The spec as data, for a prepared container's zygote: the classes a spec is made of.
SPEC_CODEC = DataclassCodec(
    (ContainerSpec, mountplan.Plan, limits.ProcessLimits, Options, *typing.get_args(mountplan.Op)),
    # a plan is made once a session and never changes, and turning its ~60 operations
    # into data each time would cost more than the rest of a request
    once=(mountplan.Plan,),
)
spec_data = SPEC_CODEC.to_data
spec_from_data = SPEC_CODEC.from_data


@dataclass(frozen=True)
class TestHandover:
    """What the test process needs to run the test: the channel to the host, the crash
    channel, and what it runs. Known at the clone, or (a prepared container) only once
    the test's turn comes (see child.ahead.handover)."""

    result_fd: int
    crash_fd: int
    payload: Payload
    #: More fds the test process keeps (a prepared container's ack pipe).
    keep: frozenset[int] = frozenset()
    #: (fd, number): where the test process first moves each fd (see child.ahead.handover).
    moves: tuple[tuple[int, int], ...] = ()

    def number(self, fd: int) -> int:
        """The number ``fd`` has in the test process."""
        return dict(self.moves).get(fd, fd)


@dataclass(frozen=True)
class Join:
    """What a container's init needs to join a network (part of its ContainerSpec)."""

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
