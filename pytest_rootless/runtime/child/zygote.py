"""Prepared containers: the zygote, which forks each test process into a container built
ahead of its test.

The *zygote* is a copy of pytest, forked once for a state of the host (what is set up
there, see plugin.prepared.ZygoteKeeper.run). While the current test runs, it has the
builder (see :mod:`.builder`, a small process, not a copy of pytest) clone the next
test's init, which builds the container; once it is built, the zygote forks the test
process into it (see :mod:`.ahead`), where it isolates itself and waits. When the test's
turn comes, the host hands the zygote the test (which item, and the channels), and the
zygote passes it on. What is left on the test's path is that hand-over; what a test costs
is one copy of pytest.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
from dataclasses import dataclass, field
from typing import NoReturn

from ...kernel import syscalls as sc
from ...kernel.syscalls import CloneFlag as NS
from ...protocol import framing
from ...protocol.messages import Builder, Prepared, Zygote
from ..spec import ContainerSpec, PayloadFromJob, spec_from_data
from . import hoststate
from .ahead import MAX_NAMESPACES, launch_test_process, namespaces
from .init import _close_inherited_fds
from .leave import EXIT_SETUP_FAILED, _parent_gone, run_then_exit


def zygote_main(
    control_fd: int,
    builder_fd: int,
    userns_fd: int,
    keep_fds: frozenset[int],
    job_payload: PayloadFromJob,
) -> NoReturn:
    """Entry point of the zygote, right after fork. Never returns.

    Requests come over ``control_fd`` (SOCK_SEQPACKET, one :mod:`...protocol.framing`
    frame a packet, see protocol.messages.Zygote): ``{"kind": "prepare", "key": k,
    "spec": ...}`` has the container built and its test process forked; ``{"kind":
    "start", "key": k, "job": ...}`` (with the spec too if none was prepared) and three
    fds (the test's result channel, crash channel, ack pipe) answers ``{"kind":
    "started", "pid": init}`` with a pidfd of the init once it is ready, then hands the
    test process its test; or answers the setup-error frame of what failed.
    ``builder_fd`` is our channel to the builder, ``userns_fd`` its user namespace, which
    we join; ``keep_fds`` are pytest's own fds, which test processes keep.
    """

    def serve() -> int:
        return _Zygote(control_fd, builder_fd, userns_fd, keep_fds, job_payload).loop()

    run_then_exit("zygote", control_fd, serve)


@dataclass
class _Prepared:
    """A container the builder makes for ``key`` (``ident``: which one, to the builder),
    and the test process forked into it."""

    key: str
    ident: int
    spec: ContainerSpec
    pid: int = 0  # init's, once built
    pidfd: int = -1  # init's
    ns_fds: list[int] = field(default_factory=list)  # init's namespaces (ahead.namespaces)
    job: socket.socket | None = None  # to the test process, waiting for its test
    test_pid: int = 0  # in the container
    failed: framing.Message | None = None
    built: object = None  # seconds its init took to build it (init's word)

    def close(self) -> None:
        if self.job is not None:
            self.job.close()  # the waiting test process ends: it has no test
        if self.pidfd >= 0:
            os.close(self.pidfd)
        for fd in self.ns_fds:
            os.close(fd)
        self.ns_fds = []


class _Zygote:
    """The zygote's loop: requests from the host, answers from the builder."""

    def __init__(
        self,
        control_fd: int,
        builder_fd: int,
        userns_fd: int,
        keep_fds: frozenset[int],
        job_payload: PayloadFromJob,
    ) -> None:
        self.control = socket.socket(fileno=control_fd)
        self.builder = socket.socket(fileno=builder_fd)
        self.userns_fd = userns_fd
        self.keep_fds = keep_fds
        self.job_payload = job_payload
        self.prepared: dict[str, _Prepared] = {}
        self.made = 0  # containers asked of the builder: the next one's ident
        self.last_pid_fd = -1

    def loop(self) -> int:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
        if _parent_gone(self.control.fileno()):
            return EXIT_SETUP_FAILED
        hoststate.save_and_name(b"rootless-zygote")  # pytest's, for the test processes
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Nothing of pytest's but what its test processes keep (stdio, capture files): not
        # the pipes of the test running now, not a socket of a plugin's.
        fds = {self.control.fileno(), self.builder.fileno(), self.userns_fd}
        _close_inherited_fds(set(self.keep_fds) | {0, 1, 2} | fds)
        # The builder's user namespace, where it makes each container's: CAP_SYS_ADMIN
        # there and over them, which entering a container's PID namespace needs.
        sc.setns(self.userns_fd, NS.NEWUSER, "the builder's user namespace")
        os.close(self.userns_fd)
        self.last_pid_fd = os.open(sc.NS_LAST_PID, os.O_WRONLY | os.O_CLOEXEC)
        # Every object pytest had stays out of the collector: no collection here or in the
        # test processes forked from here ever copies their pages (see runtime.launch).
        gc.freeze()
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(self.builder, select.POLLIN)
        try:
            while True:
                for fd, _ in poller.poll():
                    if fd == self.builder.fileno():
                        self._from_builder(wait=False)
                    elif not self._from_host():
                        return 0  # the host is done with us
        finally:
            for entry in self.prepared.values():
                entry.close()

    def _from_host(self) -> bool:
        request, fds = framing.receive_packet(self.control, 3)
        if request is None:
            return False
        key = str(request["key"])
        try:
            if request["kind"] == Zygote.PREPARE:
                self._make(key, request["spec"])
            else:
                self._start(key, request, fds)
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def _make(self, key: str, spec: framing.Message) -> _Prepared:
        if key in self.prepared:  # asked again: the one made before goes
            self._drop(self.prepared[key])
        self.made += 1
        entry = _Prepared(key, self.made, spec_from_data(spec, ContainerSpec))
        self.prepared[key] = entry
        make = {"kind": Builder.MAKE, "id": entry.ident, "spec": spec}
        framing.send_packet(self.builder, make)
        return entry

    def _from_builder(self, wait: bool = True) -> None:
        """The builder's word on a container: built (then its test process is forked
        into it now, ahead of its test) or not. Unless ``wait``, only if one is there: a
        word the poll saw may have been read since, by _start, which waits for it."""
        if not wait and not framing.readable(self.builder):
            return
        message, fds = framing.receive_packet(self.builder, 1 + MAX_NAMESPACES)
        if message is None:
            raise OSError("the builder is gone")
        ident = message.get("id")
        entry = next((p for p in self.prepared.values() if p.ident == ident), None)
        if entry is None:  # dropped meanwhile
            for fd in fds:
                os.close(fd)
            return
        if message["kind"] != Builder.READY or len(fds) != 1 + len(namespaces(entry.spec)):
            for fd in fds:
                os.close(fd)
            entry.failed = {**message, "kind": Zygote.SETUP_ERROR}
            return
        entry.pid, entry.pidfd, entry.ns_fds = int(message["pid"]), fds[0], fds[1:]
        entry.built = message.get("built")
        try:
            entry.job, entry.test_pid = launch_test_process(
                entry.spec, entry.ns_fds, self.last_pid_fd, self.job_payload
            )
        except OSError as exc:
            entry.failed = _not_prepared(f"no test process forked into it: {exc}")

    def _start(self, key: str, request: framing.Message, fds: list[int]) -> None:
        """Zygote.START: the test goes to the process prepared for ``key``; the others
        were for tests that did not come."""
        for other in [p for p in self.prepared.values() if p.key != key]:
            self._drop(other)
        entry = self.prepared.get(key)
        if entry is None and "spec" not in request:
            framing.send_packet(self.control, _not_prepared("no container was prepared for it"))
            return
        if entry is None:
            entry = self._make(key, request["spec"])
        while entry.job is None and entry.failed is None:
            self._from_builder()  # building it: wait
        if entry.job is None:
            self._drop(entry)  # its init, if it is still there, waits for nothing
            framing.send_packet(self.control, entry.failed or _not_prepared("no job channel"))
            return
        del self.prepared[key]
        try:
            # Init reports how the test process ends, on the test's result channel.
            test = {"kind": Builder.TEST, "id": entry.ident, "pid": entry.test_pid}
            framing.send_packet(self.builder, test, fds[:1])
            # STARTED first: once the test is handed over, the host must never build its
            # container again (the test may have run), whatever becomes of us.
            started = {"kind": Zygote.STARTED, "pid": entry.pid, "built": entry.built}
            framing.send_packet(self.control, started, [entry.pidfd])
            job = {"kind": Prepared.JOB, "job": request["job"]}
            try:
                framing.send_packet(entry.job, job, fds)
            except OSError:
                pass  # the test process is gone: init reports how it ended
        finally:
            entry.close()

    def _drop(self, entry: _Prepared) -> None:
        del self.prepared[entry.key]
        framing.send_packet(self.builder, {"kind": Builder.DROP, "id": entry.ident})
        entry.close()


def _not_prepared(reason: str) -> framing.Message:
    message = f"a prepared init failed: {reason}"
    return {"kind": Zygote.SETUP_ERROR, "stage": "init", "message": message}
