"""The host's side of prepared containers: its handle on the zygote (a copy of pytest that
clones the next test's init while the current test runs, see :mod:`.child.zygote`), and
running a test in a container that zygote prepared."""

from __future__ import annotations

import gc
import os
import select
import socket
from collections.abc import Callable

from ..kernel import processes
from ..kernel import syscalls as sc
from ..protocol import framing, messages
from .child import zygote
from .launch import (
    BACKSTOP_GRACE,
    ContainerError,
    CrashChannel,
    Init,
    Outcome,
    Reaper,
    _follow,
)
from .spec import ContainerSpec, PayloadFromJob, spec_data


class PreparedInit(Init):
    """The init of a prepared container: the zygote's child, which reaps it; we hold a
    pidfd (pidfd_open(2)), to kill it and to see it end."""

    def __init__(self, pid: int, pidfd: int) -> None:
        super().__init__(pid)
        self.pidfd = pidfd

    def kill(self) -> None:
        if self.pidfd >= 0:
            processes.kill_pidfd(self.pidfd)

    def gone(self) -> bool:
        self._ended(0)
        return self.pidfd < 0

    def wait(self) -> int | None:
        self._ended(None)
        return None  # the zygote sends it (init-exit)

    def _ended(self, timeout_ms: int | None) -> None:
        """Close the pidfd once it polls readable: its process has ended (pidfd_open(2))."""
        if self.pidfd < 0:
            return
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        if poller.poll(timeout_ms):
            self.close()

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


def run_prepared(
    zygote: Zygote,
    key: str,
    spec: ContainerSpec,
    job: framing.Message,
    ack_fd: int,
    on_message: Callable[[framing.Message], None],
    crash: CrashChannel,
    reaper: Reaper,
    then: Callable[[], None] = lambda: None,
) -> Outcome | None:
    """Run one test in the container the zygote prepared for ``key`` (or builds now), as
    :func:`run` does; None if it could not be built (the caller then builds one itself,
    which reports why). ``then`` runs once the test has started: the time to have the
    next container prepared."""
    reaper.poll()
    crash.reset()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    fds = (write_fd, crash.fd, ack_fd)
    try:
        # with the numbers they have here, for the test process (see zygote.prepared_main)
        init = zygote.start(key, spec, {**job, "fds": fds}, fds)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    if init is None:
        os.close(read_fd)
        return None
    try:
        then()
    except BaseException:
        init.kill()
        init.close()
        os.close(read_fd)
        raise
    return _follow(init, read_fd, spec, on_message, crash, reaper)


class Zygote:
    """A copy of pytest that clones containers' inits ahead of their tests (see
    zygote.zygote_main). Made for one state of the host: ``fingerprint`` says which."""

    #: How long a container may take to be built before the zygote counts as stuck.
    BUILD_TIMEOUT = 60.0

    def __init__(
        self, job_payload: PayloadFromJob, fingerprint: object, keep_fds: frozenset[int]
    ) -> None:
        self.fingerprint = fingerprint
        self.prepared: set[str] = set()  # keys of the containers being prepared
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        gc.freeze()  # as for a container's init, see _clone_init
        try:
            # A copy of pytest with one thread, made as for a multi-threaded pytest's relay.
            pid = sc.fork()
        except BaseException:
            gc.unfreeze()
            self.control.close()
            theirs.close()
            raise
        if pid == 0:
            try:
                self.control.close()
            finally:
                zygote.zygote_main(theirs.detach(), keep_fds, job_payload)
        gc.unfreeze()
        theirs.close()
        self.pid = pid

    def prepare(self, key: str, spec: ContainerSpec) -> None:
        """Have the container for ``key`` built now, while something else runs."""
        self._send({"kind": messages.Zygote.PREPARE, "key": key, "spec": spec_data(spec)}, ())
        self.prepared.add(key)

    def start(
        self, key: str, spec: ContainerSpec, job: framing.Message, fds: tuple[int, int, int]
    ) -> PreparedInit | None:
        """Hand the test (``job``; its result, crash and ack fds) to the init prepared for
        ``key``; None if building the container failed."""
        request: framing.Message = {"kind": messages.Zygote.START, "key": key, "job": job}
        if key not in self.prepared:  # else the zygote has it: spare a few KiB of JSON
            request["spec"] = spec_data(spec)
        self.prepared.clear()  # the zygote drops what it prepared for other tests
        self._send(request, fds)
        # Building the container (which the zygote waits for) is bounded like the rest
        # of a container's life: past the test's timeout, or a minute, it is stuck.
        limit = self.BUILD_TIMEOUT if spec.timeout is None else spec.timeout + BACKSTOP_GRACE
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        if not poller.poll(int(limit * 1000)):
            raise ContainerError(f"the zygote built no container in {limit:g} s")
        try:
            data, pidfds, _, _ = socket.recv_fds(self.control, 1 << 20, 1, socket.MSG_CMSG_CLOEXEC)
        except ConnectionError:
            data, pidfds = b"", []
        try:
            reply = framing.decode_packet(data)
        except framing.ProtocolError:
            for fd in pidfds:
                os.close(fd)
            raise ContainerError("the zygote that prepares containers is gone") from None
        if reply["kind"] != messages.Zygote.STARTED or len(pidfds) != 1:
            for fd in pidfds:
                os.close(fd)
            return None
        return PreparedInit(int(reply["pid"]), pidfds[0])

    def _send(self, request: framing.Message, fds: tuple[int, ...]) -> None:
        try:
            framing.send_packet(self.control, request, fds)
        except OSError as exc:
            raise ContainerError(f"the zygote that prepares containers is gone: {exc}") from None

    def close(self) -> None:
        """End it, and with it (PR_SET_PDEATHSIG) every container it prepared."""
        self.control.close()
        processes.kill_and_reap(self.pid)
