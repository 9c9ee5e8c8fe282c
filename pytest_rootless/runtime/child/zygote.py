"""Prepared containers: the zygote, and the init it clones ahead of its test.

A container costs two forks of pytest (init, which must be PID 1 of the new PID namespace,
then the test process it forks) plus the namespaces and the root: most of it can be done
before the test's turn. The *zygote* is a copy of pytest, forked once for a state of the
host (what is set up there, see plugin.prepared.ZygoteKeeper.run); it clones the next
test's init while the current test runs. That init builds the container, forks the test
process, which isolates itself and waits (see :mod:`.ahead`), and says it is ready; when
the test's turn comes, the host hands it the test (which item, and the channels), and init
passes it on. What is left on the test's path is that hand-over.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import NoReturn

from ...kernel import processes
from ...kernel import syscalls as sc
from ...protocol import framing
from ...protocol.messages import Prepared, Result, Zygote
from ..spec import CLONE_FLAGS, ContainerSpec, PayloadFromJob, spec_from_data
from . import hoststate
from .ahead import fork_ahead, receive_job
from .init import _close_inherited_fds, _init
from .leave import EXIT_SETUP_FAILED, _parent_gone, run_then_exit
from .timeout import status_fields


def zygote_main(control_fd: int, keep_fds: frozenset[int], job_payload: PayloadFromJob) -> NoReturn:
    """Entry point of the zygote, right after fork. Never returns.

    Requests come over ``control_fd`` (SOCK_SEQPACKET, one :mod:`...protocol.framing`
    frame a packet, see protocol.messages.Zygote): ``{"kind": "prepare", "key": k,
    "spec": ...}`` clones an init that builds the container and waits; ``{"kind":
    "start", "key": k, "job": ...}`` (with the spec too if none was prepared) and three
    fds (the test's result channel, crash channel, ack pipe) answers ``{"kind":
    "started", "pid": init}`` with a pidfd of the init prepared for ``k`` once it is
    ready, then hands it the test; or answers the init's setup-error frame. When an init
    that was handed a test ends, its status goes to that test's channel (``init-exit``).
    ``keep_fds`` are pytest's own fds, which test processes keep.
    """
    run_then_exit("zygote", control_fd, lambda: _zygote(control_fd, keep_fds, job_payload))


@dataclass
class _Prepared:
    key: str
    pid: int
    #: pidfd_open(2) of the init, made at once: it is our child, so its pid cannot be
    #: reused before we reap it, and the pidfd stays right after that.
    pidfd: int
    go: socket.socket  # the zygote's end of the socket the init waits on

    def kill(self) -> None:
        processes.kill_pidfd(self.pidfd)

    def close(self) -> None:
        self.go.close()
        os.close(self.pidfd)


def _zygote(control_fd: int, keep_fds: frozenset[int], job_payload: PayloadFromJob) -> int:
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if _parent_gone(control_fd):
        return EXIT_SETUP_FAILED
    hoststate.save()  # pytest's handlers, for the test processes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Nothing of pytest's but what its test processes keep (stdio, capture files): not
    # the pipes of the test running now, not a socket of a plugin's.
    _close_inherited_fds(set(keep_fds) | {0, 1, 2, control_fd})
    # Every object pytest had stays out of the collector: no collection here or in the
    # inits and test processes cloned from here ever copies their pages (see runtime.launch).
    gc.freeze()
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    poller = select.poll()
    poller.register(control_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    prepared: list[_Prepared] = []
    started: dict[int, int] = {}  # init's pid -> our copy of its test's result channel
    try:
        while True:
            for fd, _ in poller.poll():
                if fd == wake_r:
                    _drain(wake_r)
                    continue
                try:
                    data, fds, _, _ = socket.recv_fds(control, 1 << 20, 3, socket.MSG_CMSG_CLOEXEC)
                except ConnectionError:
                    return 0
                if not data:
                    return 0  # the host is done with us
                request = framing.decode_packet(data)
                _zygote_request(request, fds, prepared, started, control, job_payload)
            _reap_inits(started)
    finally:
        for entry in prepared:
            entry.kill()


def _drain(fd: int) -> None:
    while True:
        try:
            os.read(fd, 512)
        except BlockingIOError:
            return


def _zygote_request(
    request: framing.Message,
    fds: list[int],
    prepared: list[_Prepared],
    started: dict[int, int],
    control: socket.socket,
    job_payload: PayloadFromJob,
) -> None:
    key = str(request["key"])
    if request["kind"] == Zygote.PREPARE:
        prepared.append(
            _clone_prepared(key, spec_from_data(request["spec"], ContainerSpec), job_payload)
        )
        return
    # Zygote.START: the prepared init for this key, the others were for tests that did not come.
    entry = next((p for p in prepared if p.key == key), None)
    for other in [p for p in prepared if p is not entry]:
        other.kill()
        other.close()
        prepared.remove(other)
    try:
        if entry is None and "spec" not in request:
            framing.send_packet(control, _not_prepared("no container was prepared for it"))
            return
        if entry is None:
            entry = _clone_prepared(
                key, spec_from_data(request["spec"], ContainerSpec), job_payload
            )
        else:
            prepared.remove(entry)
        failed = _await_ready(entry.go)
        if failed is not None:
            framing.send_packet(control, failed)
            return
        # STARTED first: once the test is handed over, the host must never build its
        # container again (the test may have run), whatever becomes of us.
        framing.send_packet(control, {"kind": Zygote.STARTED, "pid": entry.pid}, [entry.pidfd])
        started[entry.pid] = os.dup(fds[0])
        framing.send_packet(entry.go, {"kind": Prepared.JOB, "job": request["job"]}, fds)
    finally:
        if entry is not None:
            entry.close()
        for fd in fds:
            os.close(fd)


def _not_prepared(reason: str) -> framing.Message:
    message = f"a prepared init failed: {reason}"
    return {"kind": Zygote.SETUP_ERROR, "stage": "init", "message": message}


def _await_ready(go: socket.socket) -> framing.Message | None:
    """Wait until a prepared init has built its container: None, or the frame it sent
    when building failed (it then exits)."""
    try:
        data = go.recv(1 << 20)
    except OSError as exc:
        data, reason = b"", str(exc)
    else:
        reason = "it ended while building the container"
    try:
        message = framing.decode_packet(data)
    except framing.ProtocolError:
        return _not_prepared(reason)
    if message["kind"] == Prepared.READY:
        return None
    if message["kind"] == Prepared.SETUP_ERROR:
        return message
    return _not_prepared(reason)


def _clone_prepared(key: str, spec: ContainerSpec, job_payload: PayloadFromJob) -> _Prepared:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cloned_at = time.monotonic()
    try:
        pid = sc.clone(CLONE_FLAGS)  # the zygote has one thread: see kernel.syscalls.clone
    except BaseException:
        ours.close()
        theirs.close()
        raise
    if pid == 0:
        go_fd = theirs.detach()
        try:
            signal.set_wakeup_fd(-1)  # the zygote's, not ours
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Nothing of the zygote's: its control socket, the channels of tests it
            # started (their hosts wait for every copy to close). Only pytest's own.
            _close_inherited_fds(set(spec.keep_fds) | {0, 1, 2, go_fd})
        finally:
            prepared_main(spec, go_fd, job_payload, cloned_at)
    theirs.close()
    return _Prepared(key, pid, os.pidfd_open(pid), ours)


def prepared_main(
    spec: ContainerSpec, go_fd: int, job_payload: PayloadFromJob, cloned_at: float
) -> NoReturn:
    """Entry point of a prepared container's init, right after clone(2): build the
    container, say so on ``go_fd``, then wait there for the test. Never returns."""
    channel = [go_fd]  # where a failure is reported: the zygote, then the test's host

    def receive() -> tuple[bytes, list[int]] | None:
        framing.send(go_fd, {"kind": Prepared.READY})
        job = receive_job(go_fd)
        if job is not None:
            channel[0] = job[1][0]  # from here on a failure is the test's
        return job

    then = fork_ahead(spec, receive, job_payload)
    run_then_exit("init", lambda: channel[0], lambda: _init(spec, go_fd, cloned_at, then))


def _reap_inits(started: dict[int, int]) -> None:
    """Reap the inits that ended; tell the test of each what its init's status was."""
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = started.pop(pid, None)
        if fd is not None:
            try:
                framing.send(fd, {"kind": Result.INIT_EXIT, **status_fields(wait_status)})
            except OSError:
                pass  # the host stopped reading: the test was done
            os.close(fd)
