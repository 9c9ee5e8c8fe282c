"""The container's init and its test process, after clone(2).

The container's **init** (PID 1 of the new PID namespace) builds the root filesystem,
enters the inner user namespace, sets the hostname and loopback, forks the **test
process** (PID 2), then reaps every process until the test process ends and reports its
status. When init exits the kernel kills everything left in the namespace: that is the
cleanup guarantee (pid_namespaces(7)). A live container's init (the ``container``
fixture) serves requests instead: each starts a **call process**.
"""

from __future__ import annotations

import faulthandler
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import NoReturn

from ...kernel import libc
from ...kernel import syscalls as sc
from ...kernel.syscalls import CloneFlag as NS
from ...protocol import framing
from ...protocol.messages import Call, Live, Result
from ..spec import ContainerSpec, Payload, TestHandover
from . import changes, hoststate, mounts
from . import holder as network_side
from .leave import EXIT_SETUP_FAILED, _parent_gone, run_then_exit
from .timeout import DUMP_SIGNAL, TestTimeout, status_fields


def container_main(
    spec: ContainerSpec, result_fd: int, crash_fd: int, payload: Payload, cloned_at: float
) -> NoReturn:
    """Entry point of the container's init, right after clone(2) (begun at ``cloned_at``,
    CLOCK_MONOTONIC). Never returns."""
    then = fork_at_turn(spec, TestHandover(result_fd, crash_fd, payload))
    run_then_exit("init", result_fd, lambda: _init(spec, result_fd, cloned_at, then))


#: What init does once its container is built, given the overlays' store and how long
#: the build took: start the test process and reap (fork_at_turn, or, in a prepared
#: container, wait for the zygote's, see builder.prepared_main).
AfterBuild = Callable[[mounts.Store | None, float], int]


def _init(spec: ContainerSpec, setup_fd: int, cloned_at: float, then: AfterBuild) -> int:
    """PID 1 of the container: build it, then start the test process and reap (``then``).
    ``setup_fd`` is where a failure to build it is reported; ``cloned_at`` is when the
    clone(2) that made us began."""
    libc.set_tracing(spec.trace)
    if spec.network is not None:
        network_side.note_cloned_inside(spec.network)  # the relay's setns, for the trace
    # Die with the host: PR_SET_PDEATHSIG, then close the race where the host died before.
    # Not for a live container: the signal follows the *thread* that made it (which may
    # end long before the test), and its init ends anyway when the host's end of the
    # control socket closes, the host's death included.
    if spec.control_fd is None:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if _parent_gone(setup_fd):
        return EXIT_SETUP_FAILED
    # Ctrl-C goes to the host, which ends the container; init must not die of it first.
    hoststate.save_and_name(b"rootless-init")  # pytest's handlers, for the test process
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # === CGROUPS === first, so that every process of the container is counted.
    for procs in spec.cgroups:
        with open(procs, "w") as f:
            f.write("0")  # "0": the writing process (cgroups(7))
        libc.trace_note(f"write({procs!r}, '0')")

    # === USER NAMESPACE (outer) === created by clone; map our own uid/gid, nothing else.
    sc.write_id_maps(spec.outer_uid, spec.outer_uid, spec.outer_gid, spec.outer_gid)

    # === MOUNT NAMESPACE: the root filesystem ===
    hosts = ((spec.network.hosts_file, "/etc/hosts"),) if spec.network is not None else ()
    store = mounts.apply(spec.plan, rw_binds=spec.rw_binds, files=hosts)

    _inner_namespaces(spec)
    # PID 1 non-dumpable: the test cannot read /proc/1/fd, /proc/1/environ or open
    # /proc/1/exe (the CVE-2019-5736 shape). Set before any fork; each child undoes it.
    sc.prctl(sc.PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")
    return then(store, time.monotonic() - cloned_at)


def _inner_namespaces(spec: ContainerSpec) -> None:
    """Init's second user namespace, and the namespaces it owns: UTS, IPC, network."""
    # === USER NAMESPACE (inner) + UTS, IPC, NET ===
    # Mounts copied into a mount namespace owned by a less privileged user namespace are
    # locked (mount_namespaces(7)): even with every capability in the inner namespace,
    # nothing can remount them read-write or uncover what they hide. The namespaces the
    # test may administer (hostname, interfaces) are owned by the inner one.
    flags = NS.NEWUSER | NS.NEWNS | NS.NEWUTS | NS.NEWIPC
    if not spec.share_network:
        flags |= NS.NEWNET
    sc.unshare(flags)
    uid, gid = spec.outer_uid, spec.outer_gid
    inner_uid, inner_gid = (0, 0) if spec.root else (uid, gid)
    sc.write_id_maps(inner_uid, uid, inner_gid, gid)
    # === UTS NAMESPACE ===
    sc.sethostname(spec.hostname)
    # === NETWORK NAMESPACE === a new one has only lo, and it is down.
    if not spec.share_network:
        sc.loopback_up()
    if spec.network is not None:  # a veth pair from the network's bridge, eth0 set up
        network_side.join(spec.network)


def fork_at_turn(spec: ContainerSpec, channels: TestHandover) -> AfterBuild:
    """Init's way for a container built when its test comes (and a live one): fork the
    test process (a live one's call processes) from init itself."""

    def then(store: mounts.Store | None, built: float) -> int:
        join_fresh_keyring()  # for every process forked from here
        result_fd = channels.result_fd
        if spec.control_fd is not None:
            tell_built(spec, result_fd, None)
            return _serve(spec, result_fd, spec.control_fd, channels.payload, store)
        tell_built(spec, result_fd, built)
        test_pid = os.fork()
        if test_pid == 0:
            _test_process(spec, channels)  # never returns
        return reap_after_start(spec, result_fd, test_pid, store)

    return then


def join_fresh_keyring() -> None:
    """A fresh, empty session keyring for this process and what it forks: the host's may
    hold Kerberos tickets or filesystem keys (keyrings(7); runc does the same). One per
    container, made by what forks its processes (init, or a prepared container's test
    process, which the zygote forked): each counts against the user's quota of 200 keys
    (kernel.keys.maxkeys) until it is freed. The test process's seccomp filter refuses
    every keyring call besides; inside a test, where that filter already is, the call is
    refused and there is nothing to join."""
    sc.keyctl_join_session_keyring()


def tell_built(spec: ContainerSpec, result_fd: int, built: float | None) -> None:
    """Init's first frames to the host: how long a test's container took to build
    (--rootless-stats) and, with --rootless-trace, its steps."""
    if built is not None:
        framing.send(result_fd, {"kind": Result.BUILT, "seconds": built})
    if spec.trace:
        framing.send(result_fd, {"kind": Result.TRACE, "stage": "init", "lines": list(libc.TRACE)})
        libc.TRACE.clear()


def reap_after_start(
    spec: ContainerSpec, result_fd: int, test_pid: int, store: mounts.Store | None
) -> int:
    # Init needs nothing of pytest's any more: only the channel to the host (and the
    # store of the overlays' upper layers).
    _close_inherited_fds({result_fd} | _store_fds(store))
    return _reap(spec, result_fd, test_pid, store)


def _store_fds(store: mounts.Store | None) -> set[int]:
    return set() if store is None else {store.fd, *(fd for _, fd in store.layers)}


#: Writable areas that are fresh tmpfs but not the test's scratch space (/tmp, HOME):
#: what is found there at the end was written by the test.
OTHER_SCRATCH = ("/var/tmp", "/dev/shm")


def _writes(store: mounts.Store | None) -> dict[str, str]:
    """What the test wrote outside /tmp, HOME and tmp_path: its changes under the
    overlays, and what it left in /var/tmp and /dev/shm."""
    found = changes.changes(store) if store is not None else {}
    for area in OTHER_SCRATCH:
        for root, dirs, files in os.walk(area):
            for name in [*dirs, *files]:
                found[os.path.join(root, name)] = "added"
    return dict(sorted(found.items()))


def _serve(
    spec: ContainerSpec,
    result_fd: int,
    control_fd: int,
    payload: Payload,
    store: mounts.Store | None,
) -> int:
    """Init of a live container: start a process for each request until the host closes
    the control socket, reaping every child meanwhile. (A live container's timeout bounds
    each call, on the host.)

    A request is one frame a SOCK_SEQPACKET packet (see protocol.messages.Live):
    ``{"kind": "call", "id": n}`` carrying one fd (SCM_RIGHTS), the process's end of a
    socket pair to the host, over which it reads its job and writes its result
    (``payload``); ``{"kind": "read-changes", "id": n}`` likewise, for init's reader of
    the upper layers. ``{"kind": "kill", "id": n}`` kills it. Init answers
    ``{"kind": "exited", "id": n, "status": s}`` when one ends.
    """
    _close_inherited_fds(set(spec.keep_fds) | {0, 1, 2, result_fd, control_fd} | _store_fds(store))
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)  # SIGCHLD wakes the poll below
    poller = select.poll()
    poller.register(control_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    running: dict[int, int] = {}  # pid -> request id
    reports: list[framing.Message] = []  # for the host; sent when it can take them, never blocking
    framing.send(result_fd, {"kind": Result.READY})
    while True:
        poller.modify(control_fd, select.POLLIN | (select.POLLOUT if reports else 0))
        events = poller.poll()
        for fd, _ in events:
            if fd == wake_r:
                while True:
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        break
            elif not events_in(fd, select.POLLIN, events):
                continue
            elif not _serve_request(spec, control, running, payload, store):
                return 0  # the host closed the container
        reports += _reap_children(running)
        while reports:
            try:
                framing.send_packet(control, reports[0], flags=socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                return 0  # the host is gone
            reports.pop(0)


def _serve_request(
    spec: ContainerSpec,
    control: socket.socket,
    running: dict[int, int],
    payload: Payload,
    store: mounts.Store | None,
) -> bool:
    try:
        message, fds, _, _ = socket.recv_fds(control, 4096, 1, socket.MSG_CMSG_CLOEXEC)
    except ConnectionError:  # the host went away with reports of ours unread
        return False
    if not message:
        return False
    request = framing.decode_packet(message)
    starts = request["kind"] in (Live.CALL, Live.READ_CHANGES)
    if starts and len(fds) == 1:
        pid = os.fork()
        if pid == 0:
            if request["kind"] == Live.READ_CHANGES:
                _changes_process(store, fds[0])  # never returns
            _call_process(spec, fds[0], payload)  # never returns
        os.close(fds[0])
        running[pid] = int(request["id"])
    elif request["kind"] == Live.KILL:
        for pid, ident in running.items():
            if ident == request.get("id"):
                os.kill(pid, signal.SIGKILL)
    for fd in fds[1:] if starts else fds:
        os.close(fd)
    return True


def events_in(fd: int, mask: int, events: list[tuple[int, int]]) -> bool:
    return any(f == fd and ev & (mask | select.POLLHUP | select.POLLERR) for f, ev in events)


def _reap_children(running: dict[int, int]) -> list[framing.Message]:
    """Reap every child that ended (orphans re-parent to init too); the reports for the
    host on the ones it started."""
    reports: list[framing.Message] = []
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reports
        if pid == 0:
            return reports
        ident = running.pop(pid, None)
        if ident is not None:
            reports.append({"kind": Live.EXITED, "id": ident, **status_fields(wait_status)})


def _call_process(spec: ContainerSpec, channel_fd: int, payload: Payload) -> NoReturn:
    """A process of a live container: isolated like a test process, then ``payload``
    reads its job from the channel and writes its result there."""

    def isolate_and_run() -> int:
        signal.set_wakeup_fd(-1)  # init's, not ours
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _isolate(spec, {channel_fd})
        faulthandler.enable(file=sys.stderr, all_threads=True)
        return payload(channel_fd)

    run_then_exit("call", channel_fd, isolate_and_run)


def _changes_process(store: mounts.Store | None, channel_fd: int) -> NoReturn:
    """A child of init (not isolated: it runs none of the test's code) that reads the
    overlays' upper layers and sends what changed, as a call's result."""

    def report() -> int:
        found = changes.changes(store) if store is not None else {}
        framing.send(channel_fd, {"kind": Call.CHANGES, "changes": found})
        return 0

    run_then_exit("changes", channel_fd, report)


def _reap(spec: ContainerSpec, result_fd: int, test_pid: int, store: mounts.Store | None) -> int:
    """PID 1: reap every child (orphans re-parent to us) until the test process ends."""
    timeout = TestTimeout(test_pid, spec.timeout)

    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if pid == test_pid:
            break
    if spec.timeout is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if spec.report_writes:
        framing.send(result_fd, {"kind": Result.WRITES, "changes": _writes(store)})
    framing.send(
        result_fd, {"kind": Result.EXIT, "timed_out": timeout.expired, **status_fields(wait_status)}
    )
    return 0  # our exit ends every process left in the namespace


def _close_inherited_fds(keep: set[int]) -> None:
    """Close every fd but ``keep`` with close_range(2) over the gaps."""
    start = 0
    for fd in sorted(keep):
        if fd > start:
            sc.close_range(start, fd - 1)
        start = fd + 1
    sc.close_range(start)


def _isolate(spec: ContainerSpec, keep: set[int]) -> None:
    """Make this fresh child of init a process of the container: the steps between
    forking and running code the test controls (docs/security.md)."""
    libc.TRACE.clear()
    sc.prctl(sc.PR_SET_DUMPABLE, 1, "PR_SET_DUMPABLE")
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # === DROP PRIVILEGE ===
    # setsid: no controlling terminal, so TIOCSTI cannot push keystrokes into the
    # user's shell (CVE-2017-5226 in bubblewrap).
    os.setsid()
    libc.trace_note("setsid()")
    if not spec.root:
        sc.cap_drop_all(spec.last_cap)
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    # No keystrokes into a terminal it inherited (TIOCSTI), whatever it does with it; no
    # keyring (they are not namespaced) and no cgroup namespace (kernel/seccomp.py).
    sc.seccomp_filter_test_process()
    spec.rlimits.apply()
    _close_inherited_fds(set(spec.keep_fds) | {0, 1, 2} | keep)

    # === ENVIRONMENT ===
    hoststate.allow_environ(spec.env_allow)  # only what the user listed (and ours, below)
    os.environ.update(dict(spec.env))
    os.environ["HOME"] = spec.plan.home
    # Temporary roots chosen on the host may be missing or read-only in here: fall back
    # to the container's fresh /tmp (tempfile's, and pytest's own in a nested run).
    for name in ("TMPDIR", "PYTEST_DEBUG_TEMPROOT"):
        path = os.environ.get(name)
        if path is not None and not os.access(path, os.W_OK | os.X_OK):
            del os.environ[name]
    os.chdir(spec.cwd)
    hoststate.restore()  # what init and the zygote changed, as pytest had it


def _test_process(spec: ContainerSpec, channels: TestHandover) -> NoReturn:
    result_fd, crash_fd = channels.number(channels.result_fd), channels.number(channels.crash_fd)

    def isolate_and_run() -> int:
        for fd, number in channels.moves:
            os.dup2(fd, number, inheritable=False)
        _isolate(spec, {result_fd, crash_fd} | channels.keep)
        return run_test(spec, channels)

    run_then_exit("test", lambda: channels.number(channels.result_fd), isolate_and_run)


def run_test(spec: ContainerSpec, channels: TestHandover) -> int:
    """The isolated test process, its channels at their numbers: run the test."""
    result_fd, crash_fd = channels.number(channels.result_fd), channels.number(channels.crash_fd)
    faulthandler.enable(file=crash_fd, all_threads=True)
    faulthandler.register(DUMP_SIGNAL, file=crash_fd, all_threads=True, chain=False)
    if spec.trace:
        trace = {"kind": Result.TRACE, "stage": "test", "lines": list(libc.TRACE)}
        framing.send(result_fd, trace)
    libc.set_tracing(False)
    framing.send(result_fd, {"kind": Result.RUNNING, "at": time.monotonic()})
    return channels.payload(result_fd)
