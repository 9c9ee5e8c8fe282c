"""A prepared container's test process, forked ahead of its test.

In a prepared container (see :mod:`.zygote`), init forks the test process as soon as the
container is built, and that process isolates itself (every step of
:func:`.init._isolate`) and waits for its test. What is left on the test's path is the
hand-over: the zygote passes the job to init, init passes it on, and the test runs. The
fork of pytest and the isolation are done while the test before runs, on the other core.

The test process gets the job and the test's channels (its result, crash and ack fds)
over a socket pair from init, as init got them from the zygote. Init keeps the result
channel too, to report how the test process ended; a failure of the waiting test process
before the job comes is kept and reported on that channel once it has it.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable
from typing import NoReturn

from ...protocol import framing
from ...protocol.messages import Prepared
from ..spec import ContainerSpec, PayloadFromJob, TestHandover
from . import mounts
from .init import AfterBuild, _isolate, reap_after_start, run_test, tell_built
from .leave import EXIT_SETUP_FAILED, run_then_exit

#: Waits for the test: the job frame and its three fds, which the caller then owns (None:
#: no test will come).
ReceiveJob = Callable[[], tuple[bytes, list[int]] | None]


def fork_ahead(spec: ContainerSpec, receive: ReceiveJob, job_payload: PayloadFromJob) -> AfterBuild:
    """Init's way for a prepared container: fork the test process now, then wait for
    the job (``receive``) and hand it on."""

    def then(store: mounts.Store | None, built: float) -> int:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        test_pid = os.fork()
        if test_pid == 0:
            ours.close()
            _waiting_test_process(spec, theirs.detach(), job_payload)  # never returns
        theirs.close()
        job = receive()
        if job is None:
            return 0  # nobody will use this container; our exit ends the test process
        data, fds = job
        result_fd = fds[0]  # ours too: how the test process ended goes there
        try:
            socket.send_fds(ours, [data], fds)
        except OSError:
            pass  # the test process is gone: reaped below, its status reported
        finally:
            for fd in fds[1:]:
                os.close(fd)
            ours.close()
        tell_built(spec, result_fd, built)
        return reap_after_start(spec, result_fd, test_pid, store)

    return then


def _waiting_test_process(
    spec: ContainerSpec, job_fd: int, job_payload: PayloadFromJob
) -> NoReturn:
    report_to = [-1]  # the result channel, once the job brought it

    def isolate_then_run() -> int:
        failure: BaseException | None = None
        try:
            _isolate(spec, {job_fd})
        except BaseException as exc:  # reported on the test's channel, once there is one
            failure = exc
        channels = _take_job(job_fd, job_payload)
        if channels is None:
            return EXIT_SETUP_FAILED
        report_to[0] = channels.number(channels.result_fd)
        for fd, number in channels.moves:  # then only the numbers the host gave stay open
            os.dup2(fd, number, inheritable=False)
            os.close(fd)
        if failure is not None:
            raise failure
        return run_test(spec, channels)

    run_then_exit("test", lambda: report_to[0], isolate_then_run)


def receive_job(fd: int) -> tuple[bytes, list[int]] | None:
    """One job frame and its result, crash and ack fds from the socket ``fd`` (closed
    here); None if the other end closed it or sent less."""
    with socket.socket(fileno=fd) as channel:
        data, fds, _, _ = socket.recv_fds(channel, 1 << 20, 3, socket.MSG_CMSG_CLOEXEC)
    if not data or len(fds) != 3:
        for received in fds:
            os.close(received)
        return None
    return data, fds


def _take_job(job_fd: int, job_payload: PayloadFromJob) -> TestHandover | None:
    """The test's job and channels, from init."""
    job = receive_job(job_fd)
    return None if job is None else handover(*job, job_payload)


def handover(data: bytes, fds: list[int], job_payload: PayloadFromJob) -> TestHandover:
    """What the test process needs from a job frame and its result, crash and ack fds."""
    message = framing.decode_packet(data)
    if message["kind"] != Prepared.JOB:
        raise framing.ProtocolError(f"a prepared init got {message['kind']!r}, not a job")
    job = message["job"]
    # Above the numbers the host has them at (F_DUPFD takes the lowest *free* number
    # from there, so nothing of ours is overwritten), then, in the test process, moved
    # to those numbers: the test holds the very fd numbers a container cloned from
    # pytest gives it, and none at a number pytest uses for something else (which a
    # test may know and probe); no move lands on an fd still to be moved.
    above = max([*fds, *job["fds"]]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above) for fd in fds]
    for fd in fds:
        os.close(fd)
    where = [int(n) for n in job["fds"]]
    payload = job_payload(job, where[2])
    moves = tuple(zip(moved, where, strict=True))
    return TestHandover(moved[0], moved[1], payload, frozenset({where[2]}), moves)
