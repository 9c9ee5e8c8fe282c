"""The host's side of prepared containers: its handles on the builder (a small process
that clones containers' inits, see :mod:`.child.builder`) and on the zygote (a copy of
pytest that forks the test process into each, see :mod:`.child.zygote`), and running a
test in a container they prepared."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
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
    """The init of a prepared container: the builder's child, which reaps it; we hold a
    pidfd (pidfd_open(2)), to kill it and to see it end."""

    def __init__(self, pid: int, pidfd: int, built: object = None) -> None:
        super().__init__(pid)
        self.pidfd = pidfd
        self.built = built  # the zygote's word: seconds its container took to build

    def _kill(self) -> None:
        if self.pidfd >= 0:
            processes.kill_pidfd(self.pidfd)

    def gone(self) -> bool:
        self._ended(0.0)
        return self.pidfd < 0

    def wait(self) -> int | None:
        self._ended(None)
        return None  # the builder sends it (init-exit)

    def _ended(self, timeout: float | None) -> None:
        """Close the pidfd once it polls readable: its process has ended (pidfd_open(2))."""
        if self.pidfd >= 0 and framing.readable(self.pidfd, timeout):
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
        # with the numbers they have here, for the test process (see ahead.handover)
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
        if init.built is not None:  # as a container built on its test's turn says it
            on_message({"kind": messages.Result.BUILT, "seconds": init.built})
        then()
    except BaseException:
        init.kill()
        init.close()
        os.close(read_fd)
        raise
    return _follow(init, read_fd, spec, on_message, crash, reaper)


#: Where this package is imported from (an editable install puts no entry on sys.path).
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Builder:
    """The small process that clones prepared containers' inits (see
    :func:`.child.builder.main`): started with ``python -c`` from the interpreter running
    pytest, so that it is small (an init is a copy of it) and has one thread. One serves
    every zygote of a session."""

    #: How long it may take to start (import this package, make its user namespace).
    START_TIMEOUT = 60.0

    def __init__(self) -> None:
        self.userns_fd = -1
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = (
            "import json, sys; sys.path[:0] = json.loads(sys.argv.pop());"
            "from pytest_rootless.runtime.child.builder import main; main()"
        )
        argv = [sys.executable, "-I", "-S", "-c", code, str(theirs.fileno()), str(os.getpid())]
        try:
            self.process = subprocess.Popen(
                [*argv, json.dumps([_PACKAGE_PARENT, *sys.path])],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            self.control.close()
            raise
        finally:
            theirs.close()
        try:
            self._await_ready()
            #: Its user namespace, which each zygote joins (see child.zygote).
            userns = f"/proc/{self.process.pid}/ns/user"
            self.userns_fd = os.open(userns, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    def _await_ready(self) -> None:
        reply = None
        if framing.readable(self.control, self.START_TIMEOUT):
            try:
                reply, _ = framing.receive_packet(self.control, 0)
            except framing.ProtocolError:
                pass
        if reply is None:
            raise ContainerError("the builder of prepared containers did not start")
        if reply["kind"] != messages.Builder.READY:
            failure = reply.get("message")
            raise ContainerError(f"the builder of prepared containers failed: {failure}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def connect(self) -> socket.socket:
        """A channel to the builder, for a zygote."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            framing.send_packet(self.control, {"kind": messages.Builder.CONNECT}, [theirs.fileno()])
        except OSError as exc:
            ours.close()
            raise ContainerError(f"the builder of prepared containers is gone: {exc}") from None
        finally:
            theirs.close()
        return ours

    def close(self) -> None:
        """End it, and with it (PR_SET_PDEATHSIG) every init it cloned."""
        self.control.close()
        if self.userns_fd >= 0:
            os.close(self.userns_fd)
            self.userns_fd = -1
        if self.process.returncode is None:
            processes.kill_and_reap(self.process.pid)
            self.process.returncode = -9


class Zygote:
    """A copy of pytest that forks test processes into containers the builder prepares
    (see zygote.zygote_main), made for one state of the host (which one is the caller's
    to know)."""

    #: How long a container may take to be built before the zygote counts as stuck.
    BUILD_TIMEOUT = 60.0

    def __init__(
        self,
        builder: Builder,
        job_payload: PayloadFromJob,
        keep_fds: frozenset[int],
    ) -> None:
        self.prepared: set[str] = set()  # keys of the containers being prepared
        to_builder = builder.connect()
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        gc.freeze()  # as for a container's init, see _clone_init
        try:
            # A copy of pytest with one thread, made as for a multi-threaded pytest's relay.
            pid = sc.fork()
        except BaseException:
            gc.unfreeze()
            self.control.close()
            theirs.close()
            to_builder.close()
            raise
        if pid == 0:
            try:
                self.control.close()
            finally:
                zygote.zygote_main(
                    theirs.detach(), to_builder.detach(), builder.userns_fd, keep_fds, job_payload
                )
        gc.unfreeze()
        theirs.close()
        to_builder.close()
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
        if not framing.readable(self.control, limit):
            raise ContainerError(f"the zygote built no container in {limit:g} s")
        try:
            reply, pidfds = framing.receive_packet(self.control, 1)
        except framing.ProtocolError:
            reply, pidfds = None, []
        if reply is None:
            raise ContainerError("the zygote that prepares containers is gone")
        if reply["kind"] != messages.Zygote.STARTED or len(pidfds) != 1:
            for fd in pidfds:
                os.close(fd)
            return None
        return PreparedInit(int(reply["pid"]), pidfds[0], reply.get("built"))

    def _send(self, request: framing.Message, fds: tuple[int, ...]) -> None:
        try:
            framing.send_packet(self.control, request, fds)
        except OSError as exc:
            raise ContainerError(f"the zygote that prepares containers is gone: {exc}") from None

    def close(self) -> None:
        """End it, and with it (PR_SET_PDEATHSIG) every container it prepared."""
        self.control.close()
        processes.kill_and_reap(self.pid)
