"""The builder: a small Python process that clones prepared containers' inits.

A prepared container's init is a copy of *this* process, not of pytest: it builds the
container (namespaces, root filesystem) and, once built, waits; the test process is then
forked into it by the zygote (see :mod:`.ahead`), so a test costs one copy of pytest, not
two. The host starts the builder once (``python -c``, see runtime.prepared.Builder): it
enters a user namespace of its own, in which every init it clones makes its namespaces,
and which each zygote joins, so that the zygote holds CAP_SYS_ADMIN over every container's
PID namespace (setns(2) into one needs it in the namespace's user namespace and in the
caller's own).

Channels (SOCK_SEQPACKET, one frame a packet, see protocol.messages.Builder): the host
hands it one channel per zygote (``connect``); a zygote asks for a container (``make``),
hears when it is built (``ready``, with a pidfd of its init) or why not (``setup-error``),
and says which test process runs in it (``test``, with the test's result channel, which
init reports on) or that none will (``drop``). The builder reaps the inits and tells each
test how its init ended (``init-exit``).
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ...kernel import processes
from ...kernel import syscalls as sc
from ...kernel.syscalls import CloneFlag as NS
from ...protocol import framing
from ...protocol.messages import Builder, Prepared, Result
from ..spec import CLONE_FLAGS, ContainerSpec, spec_from_data
from . import mounts
from .ahead import MAX_NAMESPACES, namespaces
from .init import _close_inherited_fds, _init, reap_after_start, tell_built
from .leave import run_then_exit
from .timeout import status_fields


def main() -> NoReturn:
    """``python -c`` entry point: ``sys.argv[1]`` is the host's channel, ``sys.argv[2]``
    the host's pid. Never returns."""
    control_fd, host = int(sys.argv[1]), int(sys.argv[2])
    run_then_exit("builder", control_fd, lambda: _builder(control_fd, host))


@dataclass
class _Init:
    """An init this builder cloned, for a zygote's container ``ident``."""

    ident: int
    pid: int
    pidfd: int
    go: socket.socket  # our end of the channel init waits on
    zygote: socket.socket
    result_fd: int = -1  # its test's result channel, once the test runs

    def close(self) -> None:
        self.go.close()
        os.close(self.pidfd)
        if self.result_fd >= 0:
            os.close(self.result_fd)


def _builder(control_fd: int, host: int) -> int:
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if os.getppid() != host:
        return 0  # the host died before PDEATHSIG was set
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the host's to handle
    sc.set_name(b"rootless-build")  # for ps and top; init renames itself
    uid, gid = os.getuid(), os.getgid()
    sc.unshare(NS.NEWUSER)
    sc.write_id_maps(uid, uid, gid, gid)  # the same ids in here: nothing else is mapped
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    framing.send_packet(control, {"kind": Builder.READY})
    return _Serve(control, wake_r).loop()


class _Serve:
    """The builder's loop: a method per channel (the host's, each zygote's, each init's)."""

    def __init__(self, control: socket.socket, wake_r: int) -> None:
        self.control = control
        self.wake_r = wake_r
        self.poller = select.poll()
        self.handlers: dict[int, Callable[[], None]] = {}
        self.inits: dict[int, _Init] = {}  # by pid
        self.done = False
        self._watch(control.fileno(), self._from_host)
        self._watch(wake_r, self._reap)

    def _watch(self, fd: int, handler: Callable[[], None]) -> None:
        self.poller.register(fd, select.POLLIN)
        self.handlers[fd] = handler

    def _unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def loop(self) -> int:
        try:
            while not self.done:
                for fd, _ in self.poller.poll():
                    handler = self.handlers.get(fd)
                    # Still readable? A handler before it in this batch may have read
                    # it, or closed it and made another at its number.
                    if handler is not None and framing.readable(fd):
                        handler()
            return 0
        finally:
            for init in self.inits.values():
                processes.kill_pidfd(init.pidfd)

    def _from_host(self) -> None:
        message, fds = framing.receive_packet(self.control, 1)
        if message is None:
            self.done = True  # the host is done with us: our inits die with us
            return
        if message["kind"] == Builder.CONNECT and len(fds) == 1:
            zygote = socket.socket(fileno=fds[0])
            self._watch(zygote.fileno(), lambda: self._from_zygote(zygote))
        else:
            _close_all(fds)

    def _from_zygote(self, zygote: socket.socket) -> None:
        message, fds = framing.receive_packet(zygote, 1)
        if message is None:  # the zygote ended: what it had made is for nobody
            self._unwatch(zygote.fileno())
            for init in list(self.inits.values()):
                if init.zygote is zygote and init.result_fd < 0:
                    processes.kill_pidfd(init.pidfd)
            zygote.close()
            return
        kind, ident = message["kind"], int(message["id"])
        if kind == Builder.MAKE:
            self._make(zygote, ident, spec_from_data(message["spec"], ContainerSpec))
        mine = [i for i in self.inits.values() if i.zygote is zygote and i.ident == ident]
        if kind == Builder.DROP:
            for init in mine:
                if init.result_fd < 0:  # never one whose test runs
                    processes.kill_pidfd(init.pidfd)
        elif kind == Builder.TEST and len(fds) == 1 and mine:
            init = mine[-1]
            init.result_fd = os.dup(fds[0])
            test = {"kind": Prepared.TEST, "pid": int(message["pid"])}
            try:
                framing.send_packet(init.go, test, fds)
            except OSError:
                pass  # init is gone: reaped, and its end told to the test
        _close_all(fds)

    def _make(self, zygote: socket.socket, ident: int, spec: ContainerSpec) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cloned_at = time.monotonic()
        # What we hold now stays out of init's collector, as pytest's is out of the
        # zygote's: a collection in init writes no page we still share. Here it goes
        # back to the oldest generation (as runtime.prepared does around the zygote's
        # fork), which only a full collection walks.
        gc.freeze()
        try:
            pid = sc.clone(CLONE_FLAGS)  # one thread here: see kernel.syscalls.clone
        except OSError as exc:
            gc.unfreeze()
            ours.close()
            theirs.close()
            _send(
                zygote,
                {
                    "kind": Builder.SETUP_ERROR,
                    "id": ident,
                    "stage": "init",
                    "message": f"no init for it: {exc}",
                },
            )
            return
        if pid == 0:
            go_fd = theirs.detach()
            try:
                signal.set_wakeup_fd(-1)  # the builder's, not init's
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _close_inherited_fds({0, 1, 2, go_fd})
            finally:
                prepared_main(spec, go_fd, cloned_at)
        gc.unfreeze()
        theirs.close()
        init = _Init(ident, pid, os.pidfd_open(pid), ours, zygote)
        self.inits[pid] = init
        self._watch(ours.fileno(), lambda: self._built(init))

    def _built(self, init: _Init) -> None:
        """Init's word once it has built its container (or failed to): to its zygote."""
        self._unwatch(init.go.fileno())
        try:
            message, ns_fds = framing.receive_packet(init.go, MAX_NAMESPACES)
        except (OSError, framing.ProtocolError):
            message, ns_fds = None, []
        if message is None:
            message = {
                "kind": Result.SETUP_ERROR,
                "stage": "init",
                "message": "init ended while building the container",
            }
        if message["kind"] == Prepared.READY:
            ready = {
                "kind": Builder.READY,
                "id": init.ident,
                "pid": init.pid,
                "built": message.get("built"),
            }
            _send(init.zygote, ready, (init.pidfd, *ns_fds))
        else:
            _send(init.zygote, {**message, "kind": Builder.SETUP_ERROR, "id": init.ident})
        _close_all(ns_fds)

    def _reap(self) -> None:
        """Reap the inits that ended; tell the test of each what its init's status was."""
        while True:
            try:
                os.read(self.wake_r, 512)
            except BlockingIOError:
                break
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            init = self.inits.pop(pid, None)
            if init is None:
                continue
            if init.go.fileno() in self.handlers:  # it ended before its word came
                self._built(init)
            if init.result_fd >= 0:
                try:
                    framing.send(
                        init.result_fd, {"kind": Result.INIT_EXIT, **status_fields(wait_status)}
                    )
                except OSError:
                    pass  # the host stopped reading: the test was done
            init.close()


def _send(channel: socket.socket, message: framing.Message, fds: tuple[int, ...] = ()) -> None:
    try:
        framing.send_packet(channel, message, fds)
    except OSError:
        pass  # the zygote is gone: its channel ends too


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def prepared_main(spec: ContainerSpec, go_fd: int, cloned_at: float) -> NoReturn:
    """Entry point of a prepared container's init, right after clone(2): build the
    container, say so on ``go_fd``, wait there for its test process to start, then reap
    until it ends. Never returns."""
    channel = [go_fd]  # where a failure is reported: the builder, then the test's host

    def then(store: mounts.Store | None, built: float) -> int:
        # Our namespaces, for the zygote's launcher (see ahead.launch_test_process).
        ns_fds = [os.open(f"/proc/self/ns/{name}", os.O_RDONLY) for name, _ in namespaces(spec)]
        go = socket.socket(fileno=go_fd)
        try:
            # How long the build took goes with the word that it is done: on the test's
            # channel it could come after the test's last frame, which the host reads last.
            framing.send_packet(go, {"kind": Prepared.READY, "built": built}, ns_fds)
        finally:
            _close_all(ns_fds)
        started = _receive_test(go)
        if started is None:
            return 0  # nobody will use this container; our exit ends it
        test_pid, result_fd = started
        channel[0] = result_fd
        tell_built(spec, result_fd, None)
        return reap_after_start(spec, result_fd, test_pid, store)

    def build() -> int:
        # The zygote's launcher comes into the namespace before the test process, which
        # must be PID 2 as in any container: the launcher gets a pid past it, and sets
        # ns_last_pid back before it forks (see ahead.launch_test_process). Written now,
        # while init has CAP_SYS_ADMIN in the PID namespace's user namespace.
        last_pid = os.open(sc.NS_LAST_PID, os.O_WRONLY | os.O_CLOEXEC)
        try:
            sc.write_ns_last_pid(last_pid, 2)
        finally:
            os.close(last_pid)
        return _init(spec, go_fd, cloned_at, then)

    run_then_exit("init", lambda: channel[0], build)


def _receive_test(go: socket.socket) -> tuple[int, int] | None:
    """The builder's word that the test process runs: its pid here and the test's result
    channel; None if the builder closed the channel (no test will come). Closes ``go``."""
    with go:
        message, fds = framing.receive_packet(go, 1)
    if message is None or message["kind"] != Prepared.TEST or len(fds) != 1:
        _close_all(fds)
        return None
    return int(message["pid"]), fds[0]
