"""Host side of a container's life: clone it, stream what it sends, wait, kill.

One clone(2) creates the container's init directly inside new user, mount and PID
namespaces (see :func:`pytest_rootless.kernel.syscalls.clone`); init forks the test
process. The clone is made
by the zygote, ahead of the test (:class:`Zygote`, :func:`run_prepared`), or by pytest
itself when the test comes (:func:`run`). The host reads framed messages from a pipe as
they arrive, enforces a backstop deadline, and reaps init: at once when the container
ended badly, else off the critical path (see Reaper); a container still alive when the
next one starts is killed.
"""

from __future__ import annotations

import gc
import os
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ..kernel import processes
from ..kernel import syscalls as sc
from ..protocol import framing
from ..protocol.messages import Result
from .child import init as child
from .child import relay
from .spec import CLONE_FLAGS, ContainerSpec, Payload

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
    """Containers whose test process said it is done are killed at once (SIGKILL to init:
    one cheap system call, see _collect) and reaped later: the kernel tears them down
    (unmapping memory, unmounting, freeing namespaces) on another core while pytest
    reports the test. A test cannot keep its container alive by claiming to be done.
    (One that sends its writes after the test, --rootless-report-writes, is followed to
    its end; one still running when the next container starts is killed then.)"""

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
        self.killed = False

    def kill(self) -> None:
        """SIGKILL it, once: it cannot be caught or blocked, so a second one (the reaper
        finds it still tearing down) would only cost the host a system call."""
        if not self.killed:
            self.killed = True
            self._kill()

    def _kill(self) -> None:
        processes.kill(self.pid)  # PID 1 of the namespace: the kernel kills the rest

    def gone(self) -> bool:
        """Reaped now if it has ended (never waits)."""
        try:
            return os.waitpid(self.pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            return True

    def wait(self) -> int | None:
        """Its wait status, once it has ended (None: another process reaped it)."""
        return processes.reap(self.pid)[1]


def _clone_init(
    spec: ContainerSpec,
    payload: Payload,
    crash: CrashChannel,
    child_closes: socket.socket | None = None,
) -> tuple[int, int, bool]:
    """Clone the container's init; returns the pid of our child (init, or the relay
    that clones it), the read end of its channel, and whether a relay was needed."""
    # The raw clone(2) is only safe in a single-threaded process (see kernel.syscalls.clone);
    # with other threads, a single-threaded copy made by glibc's fork() clones the init.
    # A container on a named network is cloned from inside the network's user namespace:
    # a relay enters it (setns(2)), since pytest itself could never leave it again.
    relayed = spec.network is not None or not _single_threaded()
    entry = relay.relay_main if relayed else child.container_main
    cloned_at = time.monotonic()  # where the container's build begins (Result.BUILT)
    pid, read_fd = start_child(
        (lambda: sc.fork()) if relayed else (lambda: sc.clone(CLONE_FLAGS)),
        lambda write_fd: entry(spec, write_fd, crash.fd, payload, cloned_at),
        child_closes,
    )
    return pid, read_fd, relayed


def start_child(
    fork: Callable[[], int],
    main: Callable[[int], NoReturn],
    child_closes: socket.socket | None = None,
) -> tuple[int, int]:
    """Fork (or clone, as ``fork`` does) a child that runs ``main`` with the write end of
    its channel and never returns; our end of the channel is returned with its pid."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    # Freeze the collector's view of every existing object for the fork: the child
    # then never walks (and so never copies, page by page) the host's object graph.
    # The host unfreezes at once, so its own garbage is collected as before.
    gc.freeze()
    try:
        pid = fork()
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
            main(write_fd)
    gc.unfreeze()
    os.close(write_fd)
    return pid, read_fd


def run(
    spec: ContainerSpec,
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
    spec: ContainerSpec,
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


def _single_threaded() -> bool:
    """Whether this process has one thread (num_threads, field 20 of proc_pid_stat(5)):
    C threads count too (faulthandler's watchdog, a C library's workers)."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return fields[17] == b"1"


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
            outcome.timed_out = True
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
            if kind == Result.INIT_EXIT:  # from the zygote: how a prepared init ended
                outcome.init_status = _int_or_none(message.get("status"))
            elif kind == Result.EXIT:
                outcome.status = _int_or_none(message.get("status"))
                outcome.signal = _int_or_none(message.get("signal"))
                outcome.timed_out = outcome.timed_out or bool(message.get("timed_out"))
            elif kind == Result.SETUP_ERROR:
                outcome.setup_error = message
            elif kind == Result.DONE:
                # The test process sent everything and flushed its output: nothing it
                # does after this counts. Its init is killed now, before the host prints
                # anything more (a test that forged this frame early must not write
                # into what comes next); reaped later, see Reaper.
                outcome.status = _int_or_none(message.get("status"))
                outcome.done = True
                if not until_exit:
                    kill()
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
