"""The host's side of a live container (the ``container`` fixture): its init stays up and
starts a call process for each request (see :func:`.child.init._serve`)."""

from __future__ import annotations

import dataclasses
import os
import select
import socket
import time

from ..kernel import processes
from ..protocol import framing
from ..protocol.messages import Live, Result
from .launch import ContainerError, CrashChannel, _clone_init, _int_or_none
from .spec import ContainerSpec, Payload


def _start_init(
    spec: ContainerSpec, payload: Payload, crash: CrashChannel
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


class LiveInit:
    """A container that stays up for a test: each call starts a new process in it (see
    child._serve). State (files, processes, mounts) persists until :meth:`close`."""

    #: How long the host waits for a new container to be built.
    START_TIMEOUT = 60.0

    def __init__(self, spec: ContainerSpec, payload: Payload) -> None:
        self.crash = CrashChannel()
        self.plan = spec.plan  # what its processes see (coverage data is checked by it)
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
                if message["kind"] == Result.READY:
                    return
                if message["kind"] == Result.TRACE and isinstance(message.get("lines"), list):
                    self.trace += [str(line) for line in message["lines"]]
                if message["kind"] == Result.SETUP_ERROR:
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

    def call(self, job: bytes, op: Live = Live.CALL) -> tuple[int, socket.socket]:
        """Start a process that gets ``job``; returns its id and the host's end of its
        channel (read its frames until EOF). ``op=Live.READ_CHANGES``: init's own reader
        of the overlays' upper layers instead, which sends one Call.CHANGES frame."""
        if not self.alive:
            raise ContainerError("the container is gone (closed, timed out or killed)")
        self._drain()  # or init blocks on a full socket telling us of ended processes
        self._next_id += 1
        ident = self._next_id
        self._unsettled.add(ident)
        host_end, process_end = socket.socketpair()
        try:
            framing.send_packet(self._control, {"kind": op, "id": ident}, [process_end.fileno()])
        except OSError as exc:
            host_end.close()
            raise ContainerError(f"the container is gone: {exc}") from None
        finally:
            process_end.close()
        try:
            if job:  # the changes reader reads nothing, and may be done already
                host_end.sendall(job)
            host_end.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the process is gone already: its frames and its end say how
        return ident, host_end

    def kill(self, ident: int) -> None:
        """Ask init to SIGKILL a process. Never blocks on a full socket for long: what
        init has to say is read meanwhile, so neither side waits for the other."""
        request = {"kind": Live.KILL, "id": ident}
        deadline = time.monotonic() + 10
        while self.alive and time.monotonic() < deadline:
            try:
                framing.send_packet(self._control, request, flags=socket.MSG_DONTWAIT)
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
            message = framing.decode_packet(packet)
            if message["kind"] == Live.INIT_PID:  # a relay (threads) started it
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
        except (OSError, framing.ProtocolError, ValueError, KeyError, TypeError):
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
        processes.kill(self.pid)  # our child: init, or the relay
        if self._init_pidfd is not None:
            processes.kill_pidfd(self._init_pidfd)
            os.close(self._init_pidfd)
        processes.reap(self.pid)
        os.close(self._events)
        self.crash.close()
