"""Host side of a container's life: clone it, stream what it sends, wait, kill.

One clone(2) creates the container's init directly inside new user, mount and PID
namespaces (see :func:`._syscalls.clone`); init forks the test process. The clone is made
by the zygote, ahead of the test (:class:`Zygote`, :func:`run_prepared`), or by pytest
itself when the test comes (:func:`run`). The host reads framed messages from a pipe as
they arrive, enforces a backstop deadline, and reaps init: at once when the container
ended badly, else off the critical path (see Reaper); a container still alive when the
next one starts is killed.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..kernel import syscalls as sc
from ..protocol import framing
from .child import init as child
from .child import relay, zygote
from .spec import CLONE_FLAGS, ChildSpec, JobPayload, Payload, spec_data

#: Extra time the host gives a container past its timeout before killing it itself
#: (init normally ends it first, after the stack dump).
BACKSTOP_GRACE = 2.0
#: Most of the crash channel (faulthandler output) that the host reads back.
MAX_CRASH_TEXT = 256 * 1024


@dataclass
class Outcome:
    """How a container ended, as seen from the host."""

    status: int | None = None  # the test process: exit code, or 128+signal
    signal: int | None = None
    timed_out: bool = False
    killed_by_host: bool = False
    init_status: int | None = None  # init's own wait status, as an exit code
    done: bool = False  # the test process said it finished (see Reaper)
    setup_error: framing.Message | None = None
    protocol_error: str | None = None
    crash_text: str = ""


class CrashChannel:
    """A memfd the test process's faulthandler writes into; reused for each container."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("rootless-crash", os.MFD_CLOEXEC)

    def reset(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)

    def read(self) -> str:
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, min(size, MAX_CRASH_TEXT), max(0, size - MAX_CRASH_TEXT))
        return data.decode(errors="replace")

    def close(self) -> None:
        os.close(self.fd)


class Reaper:
    """Containers whose test process said it is done end on their own (the test process
    exits, then init) and are reaped later: the kernel tears them down (unmapping memory,
    unmounting, freeing namespaces) on another core while pytest reports the test. One
    still running when the next container starts is killed then: a test cannot keep a
    container alive by claiming to be done."""

    #: Containers being torn down at most; past that, the host waits for the oldest.
    MAX_PENDING = 8

    def __init__(self) -> None:
        #: init, and what to do once it is gone (remove the container's cgroups)
        self.pending: list[tuple[Init, Callable[[], None] | None]] = []

    def add(self, init: Init, on_gone: Callable[[], None] | None = None) -> None:
        self.pending.append((init, on_gone))
        while len(self.pending) > self.MAX_PENDING:
            self._gone(*self.pending.pop(0))

    def poll(self) -> None:
        """Reap those that are gone, without waiting; kill those that are not."""
        still = []
        for init, on_gone in self.pending:
            if init.gone():
                if on_gone is not None:
                    on_gone()
            else:
                init.kill()
                still.append((init, on_gone))
        self.pending = still

    def close(self) -> None:
        """Kill and reap every container left."""
        while self.pending:
            init, on_gone = self.pending.pop()
            init.kill()
            self._gone(init, on_gone)

    @staticmethod
    def _gone(init: Init, on_gone: Callable[[], None] | None) -> None:
        init.wait()
        if on_gone is not None:
            on_gone()


class Init:
    """A container's init (PID 1: killing it ends the container), our child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def kill(self) -> None:
        _kill(self.pid)

    def gone(self) -> bool:
        """Reaped now if it has ended (never waits)."""
        try:
            return os.waitpid(self.pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            return True

    def wait(self) -> int | None:
        """Its wait status, once it has ended (None: another process reaped it)."""
        return _waitpid(self.pid)[1]


class PreparedInit(Init):
    """The init of a prepared container: the zygote's child, which reaps it; we hold a
    pidfd (pidfd_open(2)), to kill it and to see it end."""

    def __init__(self, pid: int, pidfd: int) -> None:
        super().__init__(pid)
        self.pidfd = pidfd

    def kill(self) -> None:
        if self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

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


def _clone_init(
    spec: ChildSpec,
    payload: Payload,
    crash: CrashChannel,
    child_closes: socket.socket | None = None,
) -> tuple[int, int, bool]:
    """Clone the container's init; returns the pid of our child (init, or the relay
    that clones it), the read end of its channel, and whether a relay was needed."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    # Freeze the collector's view of every existing object for the fork: the container
    # then never walks (and so never copies, page by page) the host's object graph.
    # The host unfreezes at once, so its own garbage is collected as before.
    gc.freeze()
    # The raw clone(2) is only safe in a single-threaded process (see _syscalls.clone);
    # with other threads, a single-threaded copy made by glibc's fork() clones the init.
    # A container on a named network is cloned from inside the network's user namespace:
    # a relay enters it (setns(2)), since pytest itself could never leave it again.
    relayed = spec.network is not None or not _single_threaded()
    entry = relay.relay_main if relayed else child.container_main
    try:
        pid = sc.clone(CLONE_FLAGS) if entry is child.container_main else sc.fork()
    except BaseException:
        gc.unfreeze()
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:
        try:
            os.close(read_fd)
            if child_closes is not None:
                child_closes.close()
        finally:
            entry(spec, write_fd, crash.fd, payload)
    gc.unfreeze()
    os.close(write_fd)
    return pid, read_fd, entry is relay.relay_main


def run(
    spec: ChildSpec,
    payload: Payload,
    on_message: Callable[[framing.Message], None],
    crash: CrashChannel,
    reaper: Reaper,
    on_gone: Callable[[], None] | None = None,
) -> Outcome:
    """Run one container to its end, calling ``on_message`` for each frame as it arrives,
    and ``on_gone`` once the container no longer exists."""
    reaper.poll()
    crash.reset()
    pid, read_fd, _ = _clone_init(spec, payload, crash)
    return _follow(Init(pid), read_fd, spec, on_message, crash, reaper, on_gone)


def _follow(
    init: Init,
    read_fd: int,
    spec: ChildSpec,
    on_message: Callable[[framing.Message], None],
    crash: CrashChannel,
    reaper: Reaper,
    on_gone: Callable[[], None] | None = None,
) -> Outcome:
    """Read a started container's channel (``read_fd``, closed here) to its end."""
    outcome = Outcome()
    try:
        _collect(init.kill, read_fd, spec.timeout, outcome, on_message, spec.report_writes)
    except BaseException:
        init.kill()
        raise
    finally:
        os.close(read_fd)
        if outcome.done:
            reaper.add(init, on_gone)
        else:
            wait_status = init.wait()
            if outcome.init_status is None and wait_status is not None:
                outcome.init_status = os.waitstatus_to_exitcode(wait_status)
            if on_gone is not None:
                on_gone()
    if outcome.status is None or outcome.status != 0 or outcome.timed_out:
        outcome.crash_text = crash.read()
    return outcome


def run_prepared(
    zygote: Zygote,
    key: str,
    spec: ChildSpec,
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
        self, job_payload: JobPayload, fingerprint: object, keep_fds: frozenset[int]
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

    def prepare(self, key: str, spec: ChildSpec) -> None:
        """Have the container for ``key`` built now, while something else runs."""
        self._send({"kind": "prepare", "key": key, "spec": spec_data(spec)}, ())
        self.prepared.add(key)

    def start(
        self, key: str, spec: ChildSpec, job: framing.Message, fds: tuple[int, int, int]
    ) -> PreparedInit | None:
        """Hand the test (``job``; its result, crash and ack fds) to the init prepared for
        ``key``; None if building the container failed."""
        request: framing.Message = {"kind": "start", "key": key, "job": job}
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
        messages = framing.Decoder().feed(data)
        if not messages:
            raise ContainerError("the zygote that prepares containers is gone")
        reply = messages[0]
        if reply.get("kind") != "started" or len(pidfds) != 1:
            for fd in pidfds:
                os.close(fd)
            return None
        return PreparedInit(int(reply["pid"]), pidfds[0])

    def _send(self, request: framing.Message, fds: tuple[int, ...]) -> None:
        try:
            socket.send_fds(self.control, [framing.encode(request)], list(fds))
        except OSError as exc:
            raise ContainerError(f"the zygote that prepares containers is gone: {exc}") from None

    def close(self) -> None:
        """End it, and with it (PR_SET_PDEATHSIG) every container it prepared."""
        self.control.close()
        _kill(self.pid)
        _waitpid(self.pid)


def _single_threaded() -> bool:
    """Whether this process has one thread (num_threads, field 20 of proc_pid_stat(5)):
    C threads count too (faulthandler's watchdog, a C library's workers)."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return fields[17] == b"1"


def _waitpid(pid: int) -> tuple[int, int]:
    while True:
        try:
            return os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return pid, 0


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)  # PID 1 of the namespace: the kernel kills the rest
    except ProcessLookupError:
        pass


def _collect(
    kill: Callable[[], None],
    read_fd: int,
    timeout: float | None,
    outcome: Outcome,
    on_message: Callable[[framing.Message], None],
    until_exit: bool = False,
) -> None:
    """Read frames until the test process says it is done (or, ``until_exit``, until init
    reports its end: what init sends after the test, such as its writes)."""
    decoder = framing.Decoder()
    deadline = None if timeout is None else time.monotonic() + timeout + BACKSTOP_GRACE
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    while True:
        wait_ms = None
        if deadline is not None:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
        if not poller.poll(wait_ms):
            kill()
            outcome.timed_out = outcome.killed_by_host = True
            deadline = None
            continue
        chunk = os.read(read_fd, 1 << 20)
        if not chunk:
            if decoder.pending and outcome.protocol_error is None:
                outcome.protocol_error = "the container closed its channel in the middle of a frame"
            return
        if outcome.protocol_error is not None:
            continue  # drain until EOF; the container is being killed
        for message in decoder.feed(chunk):
            kind = message["kind"]
            if kind == "init-exit":  # from the zygote: how a prepared init ended
                outcome.init_status = _int_or_none(message.get("status"))
            elif kind == "exit":
                outcome.status = _int_or_none(message.get("status"))
                outcome.signal = _int_or_none(message.get("signal"))
                outcome.timed_out = outcome.timed_out or bool(message.get("timed_out"))
            elif kind == "setup-error":
                outcome.setup_error = message
            elif kind == "done":
                # The test process sent everything and flushed its output: nothing it
                # does after this counts. The container ends by itself; see Reaper.
                outcome.status = _int_or_none(message.get("status"))
                outcome.done = True
                if not until_exit:
                    return
            else:
                try:
                    on_message(message)
                except framing.ProtocolError as exc:
                    outcome.protocol_error = str(exc)
                    kill()
                    break
        if decoder.error is not None and outcome.protocol_error is None:
            outcome.protocol_error = str(decoder.error)
            kill()


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ContainerError(RuntimeError):
    """A live container could not be started, or is gone."""


def _start_init(
    spec: ChildSpec, payload: Payload, crash: CrashChannel
) -> tuple[int, int, socket.socket, bool]:
    """Clone the init of a live container: returns (pid, events fd, control socket, and
    whether a relay process stands between)."""
    control, init_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    spec = dataclasses.replace(spec, control_fd=init_end.fileno())
    try:
        pid, read_fd, relayed = _clone_init(spec, payload, crash, child_closes=control)
    except BaseException:
        control.close()
        raise
    finally:
        init_end.close()
    return pid, read_fd, control, relayed


class LiveContainer:
    """A container that stays up for a test: each call starts a new process in it (see
    child._serve). State (files, processes, mounts) persists until :meth:`close`."""

    #: How long the host waits for a new container to be built.
    START_TIMEOUT = 60.0

    def __init__(self, spec: ChildSpec, payload: Payload) -> None:
        self.crash = CrashChannel()
        self.pid, self._events, self._control, self.relayed = _start_init(spec, payload, self.crash)
        self.trace: list[str] = []
        self._statuses: dict[int, tuple[int | None, int | None]] = {}
        self._unsettled: set[int] = set()  # started, and their end not yet consumed
        self._next_id = 0
        self._closed = False
        self._init_pid: int | None = None  # when a relay process stands between
        self._init_pidfd: int | None = None
        try:
            self._await_ready()
        except BaseException:
            self.close()
            raise

    def _await_ready(self) -> None:
        decoder = framing.Decoder()
        deadline = time.monotonic() + self.START_TIMEOUT
        while True:
            ready, _, _ = select.select([self._events], [], [], deadline - time.monotonic())
            chunk = os.read(self._events, 1 << 16) if ready else b""
            if not chunk:
                raise ContainerError("the container's init ended before it was ready")
            for message in decoder.feed(chunk):
                if message["kind"] == "ready":
                    return
                if message["kind"] == "trace" and isinstance(message.get("lines"), list):
                    self.trace += [str(line) for line in message["lines"]]
                if message["kind"] == "setup-error":
                    raise ContainerError(
                        f"the container could not be built: {message.get('message')}"
                    )
            if decoder.error is not None:
                raise ContainerError(f"the container's init sent bad data: {decoder.error}")

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def init_pid(self) -> int:
        """The host pid of the container's init. Where pytest had other threads a relay
        process cloned it (see relay.relay_main) and reports its pid on the control
        socket."""
        deadline = time.monotonic() + 5
        while self.relayed and self._init_pid is None and time.monotonic() < deadline:
            self._receive(0.1)
        return self._init_pid if self._init_pid is not None else self.pid

    @property
    def control(self) -> socket.socket:
        """Init's reports of ended processes arrive here (see :meth:`pump`)."""
        return self._control

    @property
    def alive(self) -> bool:
        if self._closed:
            return False
        try:
            gone, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return gone == 0

    def call(self, job: bytes, op: str = "start") -> tuple[int, socket.socket]:
        """Start a process that gets ``job``; returns its id and the host's end of its
        channel (read its frames until EOF). ``op="changes"``: init's own reader of the
        overlays' upper layers instead, which sends one "changes" frame."""
        if not self.alive:
            raise ContainerError("the container is gone (closed, timed out or killed)")
        self._drain()  # or init blocks on a full socket telling us of ended processes
        self._next_id += 1
        ident = self._next_id
        self._unsettled.add(ident)
        host_end, process_end = socket.socketpair()
        try:
            request = json.dumps({"op": op, "id": ident}).encode()
            socket.send_fds(self._control, [request], [process_end.fileno()])
        except OSError as exc:
            host_end.close()
            raise ContainerError(f"the container is gone: {exc}") from None
        finally:
            process_end.close()
        host_end.sendall(job)
        host_end.shutdown(socket.SHUT_WR)
        return ident, host_end

    def kill(self, ident: int) -> None:
        """Ask init to SIGKILL a process. Never blocks on a full socket for long: what
        init has to say is read meanwhile, so neither side waits for the other."""
        request = json.dumps({"op": "kill", "id": ident}).encode()
        deadline = time.monotonic() + 10
        while self.alive and time.monotonic() < deadline:
            try:
                self._control.send(request, socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                self._drain()
                select.select([self._control], [self._control], [], 0.1)
            except OSError:
                return

    def pump(self) -> None:
        """Take every report init has sent so far."""
        self._drain()

    def ended(self, ident: int) -> bool:
        return ident in self._statuses

    def _receive(self, timeout: float) -> bool:
        """Take one message of init's about an ended process; False if none came."""
        if self._closed:
            return False
        ready, _, _ = select.select([self._control], [], [], max(0.0, timeout))
        if not ready:
            return False
        try:
            packet = self._control.recv(4096)
            message = json.loads(packet)
            if message.get("kind") == "init-pid":  # a relay (threads) started it
                self._init_pid = int(message["pid"])
                # Not our child: hold it by a pidfd, so that killing it later can never
                # hit another process that got the same pid after it ended.
                try:
                    self._init_pidfd = os.pidfd_open(self._init_pid)
                except OSError:
                    self._init_pidfd = None
                return True
            ident = int(message["id"])
            status, signum = message.get("status"), message.get("signal")
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if ident in self._unsettled:
            self._statuses[ident] = (_int_or_none(status), _int_or_none(signum))
        return bool(packet)

    def _drain(self) -> None:
        while not self._closed and self._receive(0):
            pass

    def status(self, ident: int, timeout: float = 10.0) -> tuple[int | None, int | None]:
        """(status, signal) of a finished process, as init reports it."""
        deadline = time.monotonic() + timeout
        while ident not in self._statuses:
            if not self._receive(deadline - time.monotonic()):
                return None, None
        return self._statuses[ident]

    def settle(self, ident: int) -> None:
        """The process's end was consumed: forget it."""
        self._unsettled.discard(ident)
        self._statuses.pop(ident, None)

    def close(self) -> None:
        """End every process of the container (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._control.close()  # init returns when it reads EOF: the container ends
        _kill(self.pid)  # our child: init, or the relay
        if self._init_pidfd is not None:
            try:
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(self._init_pidfd)
        _waitpid(self.pid)
        os.close(self._events)
        self.crash.close()
