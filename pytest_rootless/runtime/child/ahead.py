"""A prepared container's test process: forked by the zygote into a container the
builder's init built, ahead of its test.

One copy of pytest per test: init is a copy of the small builder (see :mod:`.builder`), and
the test process is forked from the zygote straight into init's namespaces. The zygote
cannot fork there itself and keep the test process a child of PID 1, so a *launcher* does
it: a process that shares the zygote's memory (clone(2) with CLONE_VM|CLONE_VFORK, no copy
made), made once the zygote has pointed its children at the container's PID namespace,
so the launcher is in it. The launcher joins init's other namespaces, forks the test
process (the one copy) and exits; the kernel re-parents the test process to the init of
the launcher's PID namespace (pid_namespaces(7)): the test's parent is PID 1, as in any
container. The test process isolates itself (every step of :func:`.init._isolate`) and
waits for its test. What is left on the test's path is the hand-over: the zygote sends the
job and the test's channels (its result, crash and ack fds), and the test runs.
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import NoReturn

from ...kernel import syscalls as sc
from ...kernel.syscalls import CloneFlag as NS
from ...protocol import framing
from ...protocol.messages import Prepared
from ..spec import ContainerSpec, PayloadFromJob, TestHandover
from .init import _isolate, join_fresh_keyring, run_test
from .leave import EXIT_SETUP_FAILED, run_then_exit

#: How many namespaces :func:`namespaces` names at most (fds a channel carries for them).
MAX_NAMESPACES = 6


def namespaces(spec: ContainerSpec) -> tuple[tuple[str, NS], ...]:
    """The namespaces of init's the test process is forked into (their names under
    /proc/self/ns, their setns(2) flags), in the order they are joined: the PID namespace
    (by the zygote, for its children), then the user namespace, whose capabilities the
    others need."""
    joined: tuple[tuple[str, NS], ...] = (("pid", NS.NEWPID), ("user", NS.NEWUSER))
    joined += (("mnt", NS.NEWNS), ("uts", NS.NEWUTS), ("ipc", NS.NEWIPC))
    return joined if spec.share_network else (*joined, ("net", NS.NEWNET))


def launch_test_process(
    spec: ContainerSpec, ns_fds: list[int], last_pid_fd: int, job_payload: PayloadFromJob
) -> tuple[socket.socket, int]:
    """In the zygote: fork the test process into the container whose init (built,
    waiting) opened ``ns_fds``, its :func:`namespaces`. Returns the channel its job goes
    down and its pid in the container (2).

    Init opens them for us: setns(2) on init's pidfd, or on its /proc/<pid>/ns files,
    would need ptrace access to init, which is not dumpable (see init._init).
    ``last_pid_fd`` is :data:`.sc.NS_LAST_PID` opened for writing: the launcher takes a
    pid past 2 (init set ns_last_pid so), and sets it back to 1 before forking, so the
    test process is PID 2 as in any container.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    forked: list[int] = []
    failed: list[BaseException] = []
    (pid_name, pid_flag), *others = namespaces(spec)

    def launcher() -> int:
        try:
            # Before entering init's user namespace: writing ns_last_pid needs
            # CAP_SYS_ADMIN over the PID namespace's owner, which the zygote's has.
            sc.write_ns_last_pid(last_pid_fd, 1)
            for fd, (name, flag) in zip(ns_fds[1:], others, strict=True):
                sc.setns(fd, flag, f"init's {name}")
            pid = sc.fork()
        except BaseException as exc:  # raised in the zygote, which shares our memory
            failed.append(exc)
            return 1
        if pid == 0:
            ours.close()
            _waiting_test_process(spec, theirs.detach(), job_payload)  # never returns
        forked.append(pid)
        return 0

    try:
        # Our children only: each later launch points them at its own container.
        sc.setns(ns_fds[0], pid_flag, f"init's {pid_name}")
        os.waitpid(sc.clone_vm_vfork(launcher), 0)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    if failed or not forked:
        ours.close()
        raise failed[0] if failed else OSError("the launcher forked no test process")
    return ours, forked[0]


def _adopted() -> None:
    """Wait until the launcher that forked us has ended, so that our parent is init (a
    pidfd polls readable once its process has exited and its children are re-parented,
    pidfd_open(2)). PR_SET_PDEATHSIG, set next, then follows init's death."""
    parent = os.getppid()
    if parent == 1:
        return
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        return  # gone, and reaped by the zygote: re-parented already
    try:
        framing.readable(pidfd, None)
    finally:
        os.close(pidfd)


def _waiting_test_process(
    spec: ContainerSpec, job_fd: int, job_payload: PayloadFromJob
) -> NoReturn:
    report_to = [-1]  # the result channel, once the job brought it

    def isolate_then_run() -> int:
        failure: BaseException | None = None
        try:
            _adopted()
            join_fresh_keyring()  # the zygote's is the host's
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


def receive_job(fd: int) -> tuple[framing.Message, list[int]] | None:
    """One job frame and its result, crash and ack fds from the socket ``fd`` (closed
    here); None if the other end closed it or sent less."""
    with socket.socket(fileno=fd) as channel:
        message, fds = framing.receive_packet(channel, 3)
    if message is None or len(fds) != 3:
        for received in fds:
            os.close(received)
        return None
    return message, fds


def _take_job(job_fd: int, job_payload: PayloadFromJob) -> TestHandover | None:
    """The test's job and channels, from the zygote."""
    job = receive_job(job_fd)
    return None if job is None else handover(*job, job_payload)


def handover(message: framing.Message, fds: list[int], job_payload: PayloadFromJob) -> TestHandover:
    """What the test process needs from a job frame and its result, crash and ack fds."""
    if message["kind"] != Prepared.JOB:
        raise framing.ProtocolError(f"a prepared test process got {message['kind']!r}, not a job")
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
