"""Everything that runs after the fork, inside the container.

Rules for this module (CPython's ``subprocess``/``multiprocessing.popen_fork`` discipline):

* the only way out of a child is ``os._exit`` in a ``finally``: a child never returns into
  the caller's stack (that would run pytest's session twice);
* a child never raises to the host: failures go up the result channel as data
  (:mod:`._wire` frames), then the child exits with a status the host can also read;
* nothing here touches pytest: the payload (what the test process runs) is a callable
  handed in by the host side, and runs after isolation is complete.

Two processes live here. The container's **init** (PID 1 of the new PID namespace) builds
the root filesystem, enters the inner user namespace, sets the hostname and loopback, forks
the **test process** (PID 2), then reaps every process until the test process ends and
reports its status. When init exits the kernel kills everything left in the namespace:
that is the cleanup guarantee (pid_namespaces(7)). Around them: the relay (a
single-threaded copy of pytest that clones an init), and the zygote (a copy of pytest that
clones inits ahead of their tests, see "prepared containers" below).
"""

from __future__ import annotations

import dataclasses
import faulthandler
import fcntl
import gc
import json
import os
import select
import signal
import socket
import sys
import tempfile
import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from ...kernel import libc
from ...kernel import syscalls as sc
from ...kernel.syscalls import CloneFlag as NS
from ...protocol import framing
from .. import limits, mountplan
from .. import network as network_mod
from ..options import Options
from . import changes, mounts

#: Exit status of init when building the container failed (sysexits' EX_SOFTWARE).
EXIT_SETUP_FAILED = 70
#: faulthandler dumps every thread's stack on this signal (sent by init on timeout).
DUMP_SIGNAL = signal.SIGRTMAX - 1
#: How long init waits for the stack dump after a timeout before it ends the container.
DUMP_GRACE = 0.3


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
    network: network_mod.Join | None = None


#: The namespaces the container's init is cloned into (the rest come with the inner
#: user namespace, see _init).
CLONE_FLAGS = NS.NEWUSER | NS.NEWNS | NS.NEWPID

Payload = Callable[[int], int]
"""What the test process runs once isolated: gets the result fd, returns an exit status."""


def _leave(stage: str, result_fd: int | Callable[[], int], body: Callable[[], int]) -> NoReturn:
    """Run ``body`` in a child and leave only through ``os._exit`` with its status; an
    exception goes up the channel (``result_fd``, or where it says then) as data: a child
    never raises into pytest's stack."""
    status = EXIT_SETUP_FAILED
    try:
        status = body()
    except BaseException as exc:
        try:
            framing.send(
                result_fd() if callable(result_fd) else result_fd, _error_message(exc, stage)
            )
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):  # os._exit skips it: -s output to a pipe
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(status)


def container_main(spec: ChildSpec, result_fd: int, crash_fd: int, payload: Payload) -> NoReturn:
    """Entry point of the container's init, right after clone(2). Never returns."""
    _leave(
        "init",
        result_fd,
        lambda: _init(spec, result_fd, lambda: TestChannels(result_fd, crash_fd, payload)),
    )


def relay_main(spec: ChildSpec, result_fd: int, crash_fd: int, payload: Payload) -> NoReturn:
    """Entry point of a single-threaded copy of a multi-threaded pytest: clone the
    container's init from here (safe: no other thread can hold a malloc lock), wait for
    it and exit with its status. Never returns."""

    def relay() -> int:
        if spec.control_fd is None:  # see _init
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
        if _parent_gone(result_fd):
            return EXIT_SETUP_FAILED
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if spec.network is not None:
            # The container's namespaces become children of the network's user
            # namespace, over which the network's holder has its capabilities (_network).
            label = f"<user namespace of network {spec.network.network!r}>"
            sc.setns(spec.network.userns_fd, NS.NEWUSER, label)
        pid = sc.clone(CLONE_FLAGS)
        if pid == 0:
            container_main(spec, result_fd, crash_fd, payload)
        if spec.control_fd is not None:  # the host's Container.pid is init's, not ours
            with socket.socket(fileno=os.dup(spec.control_fd)) as control:
                control.send(json.dumps({"kind": "init-pid", "pid": pid}).encode())
        os.close(result_fd)
        _, wait_status = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        return 128 - status if status < 0 else status

    _leave("init", result_fd, relay)


def holder_main(control_fd: int, trace: bool) -> NoReturn:
    """Entry point of a named network's holder process, right after fork (see
    network_mod.hold). Never returns."""
    _leave("network", control_fd, lambda: network_mod.hold(control_fd, trace))


# === PREPARED CONTAINERS ====================================================================
#
# A container costs two forks of pytest (init, which must be PID 1 of the new PID namespace,
# then the test process it forks) plus the namespaces and the root: most of it can be done
# before the test's turn. The *zygote* is a copy of pytest, forked once for a state of the
# host (what is set up there, see _runner.SessionState.run_prepared); it clones the next
# test's init while the current test runs. That init builds the container and waits; when
# the test's turn comes, the host hands it the test (which item, and the channels), and it
# forks the test process as every init does. What is left on the test's path is one fork.

#: Builds what a prepared container's test process runs from the host's description of
#: the test (plain data) and the fd of its ack pipe.
JobPayload = Callable[[dict[str, object], int], Payload]


def zygote_main(control_fd: int, keep_fds: frozenset[int], job_payload: JobPayload) -> NoReturn:
    """Entry point of the zygote, right after fork. Never returns.

    Requests come over ``control_fd`` (SOCK_SEQPACKET, one :mod:`._wire` frame a message):
    ``{"kind": "prepare", "key": k, "spec": ...}`` clones an init that builds the container
    and waits; ``{"kind": "start", "key": k, "job": ...}`` (with the spec too if none was
    prepared) and three fds (the test's result channel, crash channel, ack pipe) answers
    ``{"kind": "started", "pid": init}`` with a pidfd of the init prepared for ``k`` once
    it is ready, then hands it the test; or answers the init's setup-error frame. When an
    init that was handed a test ends, its status goes to that test's channel
    (``init-exit``). ``keep_fds`` are pytest's own fds, which test processes keep.
    """
    _leave("zygote", control_fd, lambda: _zygote(control_fd, keep_fds, job_payload))


@dataclass
class _Prepared:
    key: str
    pid: int
    #: pidfd_open(2) of the init, made at once: it is our child, so its pid cannot be
    #: reused before we reap it, and the pidfd stays right after that.
    pidfd: int
    go: socket.socket  # the zygote's end of the socket the init waits on

    def kill(self) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self.go.close()
        os.close(self.pidfd)


def _zygote(control_fd: int, keep_fds: frozenset[int], job_payload: JobPayload) -> int:
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if _parent_gone(control_fd):
        return EXIT_SETUP_FAILED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Nothing of pytest's but what its test processes keep (stdio, capture files): not
    # the pipes of the test running now, not a socket of a plugin's.
    _close_inherited_fds(set(keep_fds) | {0, 1, 2, control_fd})
    # Every object pytest had stays out of the collector: no collection here or in the
    # inits and test processes cloned from here ever copies their pages (see _spawn).
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
                decoder = framing.Decoder()
                for request in decoder.feed(data):
                    _zygote_request(request, fds, prepared, started, control, job_payload)
                if decoder.error is not None:
                    raise decoder.error
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
    job_payload: JobPayload,
) -> None:
    key = str(request["key"])
    if request["kind"] == "prepare":
        prepared.append(
            _clone_prepared(key, spec_from_data(request["spec"], ChildSpec), job_payload)
        )
        return
    # "start": the prepared init for this key, the others were for tests that did not come.
    entry = next((p for p in prepared if p.key == key), None)
    for other in [p for p in prepared if p is not entry]:
        other.kill()
        other.close()
        prepared.remove(other)
    try:
        if entry is None and "spec" not in request:
            control.send(framing.encode(_not_prepared("no container was prepared for it")))
            return
        if entry is None:
            entry = _clone_prepared(key, spec_from_data(request["spec"], ChildSpec), job_payload)
        else:
            prepared.remove(entry)
        failed = _await_ready(entry.go)
        if failed is not None:
            control.send(framing.encode(failed))
            return
        # "started" first: once the test is handed over, the host must never build its
        # container again (the test may have run), whatever becomes of us.
        reply = {"kind": "started", "pid": entry.pid}
        socket.send_fds(control, [framing.encode(reply)], [entry.pidfd])
        started[entry.pid] = os.dup(fds[0])
        socket.send_fds(entry.go, [json.dumps(request["job"]).encode()], fds)
    finally:
        if entry is not None:
            entry.close()
        for fd in fds:
            os.close(fd)


def _not_prepared(reason: str) -> framing.Message:
    return {"kind": "setup-error", "stage": "init", "message": f"a prepared init failed: {reason}"}


def _await_ready(go: socket.socket) -> framing.Message | None:
    """Wait until a prepared init has built its container: None, or the frame it sent
    when building failed (it then exits)."""
    try:
        data = go.recv(1 << 20)
    except OSError as exc:
        data, reason = b"", str(exc)
    else:
        reason = "it ended while building the container"
    messages = framing.Decoder().feed(data)
    if messages and messages[0].get("kind") == "ready":
        return None
    if messages and messages[0].get("kind") == "setup-error":
        return messages[0]
    return _not_prepared(reason)


def _clone_prepared(key: str, spec: ChildSpec, job_payload: JobPayload) -> _Prepared:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = sc.clone(CLONE_FLAGS)  # the zygote has one thread: see _syscalls.clone
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
            prepared_main(spec, go_fd, job_payload)
    theirs.close()
    return _Prepared(key, pid, os.pidfd_open(pid), ours)


def prepared_main(spec: ChildSpec, go_fd: int, job_payload: JobPayload) -> NoReturn:
    """Entry point of a prepared container's init, right after clone(2): build the
    container, say so on ``go_fd``, then wait there for the test. Never returns."""
    channel = [go_fd]  # where a failure is reported: the zygote, then the test's host

    def await_test() -> TestChannels | None:
        framing.send(go_fd, {"kind": "ready"})
        with socket.socket(fileno=os.dup(go_fd)) as go:
            data, fds, _, _ = socket.recv_fds(go, 1 << 20, 3, socket.MSG_CMSG_CLOEXEC)
        if not data or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return None
        channel[0] = fds[0]  # from here on a failure is the test's
        job = json.loads(data)
        # Above the numbers the host has them at (F_DUPFD takes the lowest *free* number
        # from there, so nothing of ours is overwritten), then, in the test process, moved
        # to those numbers: the test holds the very fd numbers a container cloned from
        # pytest gives it, and none at a number pytest uses for something else (which a
        # test may know and probe); no move lands on an fd still to be moved.
        above = max([*fds, *job["fds"]]) + 1
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above) for fd in fds]
        for fd in fds:
            os.close(fd)
        os.close(go_fd)
        channel[0] = moved[0]
        where = [int(n) for n in job["fds"]]
        payload = job_payload(job, where[2])
        moves = tuple(zip(moved, where, strict=True))
        return TestChannels(moved[0], moved[1], payload, frozenset({where[2]}), moves)

    _leave("init", lambda: channel[0], lambda: _init(spec, go_fd, await_test))


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
                framing.send(fd, {"kind": "init-exit", **_status_fields(wait_status)})
            except OSError:
                pass  # the host stopped reading: the test was done
            os.close(fd)


# --- specs as data (a request to the zygote is JSON, never a pickle) -----------------------

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


def _error_message(exc: BaseException, stage: str) -> framing.Message:
    return {
        "kind": "setup-error",
        "stage": stage,
        "type": type(exc).__name__,
        "errno": getattr(exc, "errno", None),
        "call": getattr(exc, "call", None),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "trace": list(libc.TRACE),
    }


def _parent_gone(result_fd: int) -> bool:
    """True if the host already closed its end (PDEATHSIG came too late to fire): a pipe
    whose reader is gone polls POLLERR, a socket whose peer is gone POLLHUP (but what it
    sent before, such as a prepared init's test, is still to be read)."""
    poller = select.poll()
    poller.register(result_fd, select.POLLOUT | select.POLLIN)
    for _, ev in poller.poll(0):
        if ev & select.POLLERR or (ev & select.POLLHUP and not ev & select.POLLIN):
            return True
    return False


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


def _init(spec: ChildSpec, setup_fd: int, start: Start) -> int:
    """PID 1 of the container: build it, then (``start``) fork the test process and reap.
    ``setup_fd`` is where a failure to build it is reported."""
    libc.set_tracing(spec.trace)
    if spec.network is not None:
        network_mod.note_cloned_inside(spec.network)  # the relay's setns, for the trace
    # Die with the host: PR_SET_PDEATHSIG, then close the race where the host died before.
    # Not for a live container: the signal follows the *thread* that made it (which may
    # end long before the test), and its init ends anyway when the host's end of the
    # control socket closes, the host's death included.
    if spec.control_fd is None:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if _parent_gone(setup_fd):
        return EXIT_SETUP_FAILED
    # Ctrl-C goes to the host, which ends the container; init must not die of it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # === CGROUPS === first, so that every process of the container is counted.
    for procs in spec.cgroups:
        with open(procs, "w") as f:
            f.write("0")  # "0": the writing process (cgroups(7))
        libc.trace_note(f"write({procs!r}, '0')")

    # === USER NAMESPACE (outer) === created by clone; map our own uid/gid, nothing else.
    uid, gid = spec.outer_uid, spec.outer_gid
    sc.write_id_maps(uid, uid, gid, gid)

    # === MOUNT NAMESPACE: the root filesystem ===
    hosts = ((spec.network.hosts_file, "/etc/hosts"),) if spec.network is not None else ()
    store = mounts.apply(spec.plan, rw_binds=spec.rw_binds, files=hosts)

    # === USER NAMESPACE (inner) + UTS, IPC, NET ===
    # Mounts copied into a mount namespace owned by a less privileged user namespace are
    # locked (mount_namespaces(7)): even with every capability in the inner namespace,
    # nothing can remount them read-write or uncover what they hide. The namespaces the
    # test may administer (hostname, interfaces) are owned by the inner one.
    flags = NS.NEWUSER | NS.NEWNS | NS.NEWUTS | NS.NEWIPC
    if not spec.share_network:
        flags |= NS.NEWNET
    sc.unshare(flags)
    inner_uid, inner_gid = (0, 0) if spec.root else (uid, gid)
    sc.write_id_maps(inner_uid, uid, inner_gid, gid)
    # A fresh, empty session keyring, which every process of the container inherits: the
    # host's may hold Kerberos tickets or filesystem keys (keyrings(7); runc does the
    # same). One per container, not per process: each counts against the user's quota of
    # 200 keys (kernel.keys.maxkeys) until it is freed.
    sc.keyctl_join_session_keyring()
    # === UTS NAMESPACE ===
    sc.sethostname(spec.hostname)
    # === NETWORK NAMESPACE === a new one has only lo, and it is down.
    if not spec.share_network:
        sc.loopback_up()
    if spec.network is not None:  # a veth pair from the network's bridge, eth0 set up
        network_mod.join(spec.network)

    channels = start()
    if channels is None:
        return 0  # a prepared container nobody will use
    result_fd = channels.result_fd
    if spec.trace:
        framing.send(result_fd, {"kind": "trace", "stage": "init", "lines": list(libc.TRACE)})
        libc.TRACE.clear()

    # PID 1 non-dumpable: the test cannot read /proc/1/fd, /proc/1/environ or open
    # /proc/1/exe (the CVE-2019-5736 shape). Set before the fork; the child undoes it.
    sc.prctl(sc.PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")
    if spec.control_fd is not None:
        return _serve(spec, result_fd, spec.control_fd, channels.payload, store)
    test_pid = os.fork()
    if test_pid == 0:
        _test_process(spec, channels)  # never returns
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
    spec: ChildSpec,
    result_fd: int,
    control_fd: int,
    payload: Payload,
    store: mounts.Store | None,
) -> int:
    """Init of a live container: start a process for each request until the host closes
    the control socket, reaping every child meanwhile. (A live container's timeout bounds
    each call, on the host.)

    A request is one SOCK_SEQPACKET message ``{"op": "start", "id": n}`` carrying one fd
    (SCM_RIGHTS): the process's end of a socket pair to the host, over which it reads its
    job and writes its result (``payload``). ``{"op": "kill", "id": n}`` kills it. Init
    answers ``{"kind": "exited", "id": n, "status": s}`` when one ends.
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
    reports: list[bytes] = []  # for the host; sent when it can take them, never blocking
    framing.send(result_fd, {"kind": "ready"})
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
                control.send(reports[0], socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                return 0  # the host is gone
            reports.pop(0)


def _serve_request(
    spec: ChildSpec,
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
    request = json.loads(message)
    if request.get("op") in ("start", "changes") and len(fds) == 1:
        pid = os.fork()
        if pid == 0:
            if request["op"] == "changes":
                _changes_process(store, fds[0])  # never returns
            _call_process(spec, fds[0], payload)  # never returns
        os.close(fds[0])
        running[pid] = int(request["id"])
    elif request.get("op") == "kill":
        for pid, ident in running.items():
            if ident == request.get("id"):
                os.kill(pid, signal.SIGKILL)
    for fd in fds[1:] if request.get("op") in ("start", "changes") else fds:
        os.close(fd)
    return True


def events_in(fd: int, mask: int, events: list[tuple[int, int]]) -> bool:
    return any(f == fd and ev & (mask | select.POLLHUP | select.POLLERR) for f, ev in events)


def _reap_children(running: dict[int, int]) -> list[bytes]:
    """Reap every child that ended (orphans re-parent to init too); the reports for the
    host on the ones it started."""
    reports: list[bytes] = []
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reports
        if pid == 0:
            return reports
        ident = running.pop(pid, None)
        if ident is not None:
            message = {"kind": "exited", "id": ident, **_status_fields(wait_status)}
            reports.append(json.dumps(message).encode())


def _call_process(spec: ChildSpec, channel_fd: int, payload: Payload) -> NoReturn:
    """A process of a live container: isolated like a test process, then ``payload``
    reads its job from the channel and writes its result there."""

    def isolate_and_run() -> int:
        signal.set_wakeup_fd(-1)  # init's, not ours
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _isolate(spec, {channel_fd})
        faulthandler.enable(file=sys.stderr, all_threads=True)
        return payload(channel_fd)

    _leave("call", channel_fd, isolate_and_run)


def _changes_process(store: mounts.Store | None, channel_fd: int) -> NoReturn:
    """A child of init (not isolated: it runs none of the test's code) that reads the
    overlays' upper layers and sends what changed, as a call's result."""

    def report() -> int:
        found = changes.changes(store) if store is not None else {}
        framing.send(channel_fd, {"kind": "changes", "changes": found})
        return 0

    _leave("changes", channel_fd, report)


def _status_fields(wait_status: int) -> dict[str, int]:
    """A child's end as the engines report it: its exit code, or 128+signal (bubblewrap,
    nsjail and Bazel do the same) with the signal named apart."""
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        return {"signal": signum, "status": 128 + signum}
    return {"status": os.waitstatus_to_exitcode(wait_status)}


def _reap(spec: ChildSpec, result_fd: int, test_pid: int, store: mounts.Store | None) -> int:
    """PID 1: reap every child (orphans re-parent to us) until the test process ends."""
    timed_out = False

    if spec.timeout is not None:

        def on_alarm(signum: int, frame: object) -> None:
            nonlocal timed_out
            timed_out = True
            try:
                os.kill(test_pid, DUMP_SIGNAL)  # faulthandler in the test dumps all stacks
            except ProcessLookupError:
                return
            time.sleep(DUMP_GRACE)
            os.kill(test_pid, signal.SIGKILL)

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, spec.timeout)

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
        framing.send(result_fd, {"kind": "writes", "changes": _writes(store)})
    framing.send(result_fd, {"kind": "exit", "timed_out": timed_out, **_status_fields(wait_status)})
    return 0  # our exit ends every process left in the namespace


def _close_inherited_fds(keep: set[int]) -> None:
    """Close every fd but ``keep`` with close_range(2) over the gaps."""
    start = 0
    for fd in sorted(keep):
        if fd > start:
            sc.close_range(start, fd - 1)
        start = fd + 1
    sc.close_range(start)


def _isolate(spec: ChildSpec, keep: set[int]) -> None:
    """Make this fresh child of init a process of the container: the steps between
    forking and running code the test controls (runtime.md, step 8)."""
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
    # No keystrokes into a terminal it inherited (TIOCSTI), whatever it does with it.
    sc.seccomp_deny_terminal_injection()
    spec.rlimits.apply()
    _close_inherited_fds(set(spec.keep_fds) | {0, 1, 2} | keep)

    # === ENVIRONMENT ===
    os.environ.update(dict(spec.env))
    os.environ["HOME"] = spec.plan.home
    # Temporary roots chosen on the host may be missing or read-only in here: fall back
    # to the container's fresh /tmp (tempfile's, and pytest's own in a nested run).
    for name in ("TMPDIR", "PYTEST_DEBUG_TEMPROOT"):
        path = os.environ.get(name)
        if path is not None and not os.access(path, os.W_OK | os.X_OK):
            del os.environ[name]
    tempfile.tempdir = None  # the host's cached choice may not exist in here
    os.chdir(spec.cwd)


def _test_process(spec: ChildSpec, channels: TestChannels) -> NoReturn:
    result_fd, crash_fd = channels.number(channels.result_fd), channels.number(channels.crash_fd)

    def isolate_and_run() -> int:
        for fd, number in channels.moves:
            os.dup2(fd, number, inheritable=False)
        _isolate(spec, {result_fd, crash_fd} | channels.keep)
        faulthandler.enable(file=crash_fd, all_threads=True)
        faulthandler.register(DUMP_SIGNAL, file=crash_fd, all_threads=True, chain=False)
        if spec.trace:
            framing.send(result_fd, {"kind": "trace", "stage": "test", "lines": list(libc.TRACE)})
        libc.set_tracing(False)
        return channels.payload(result_fd)

    _leave("test", lambda: channels.number(channels.result_fd), isolate_and_run)
