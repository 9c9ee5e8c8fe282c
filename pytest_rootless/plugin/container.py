"""The public :class:`Container` and :class:`Process`: a live container a test drives, on
the host's side (each call runs in the container, see :mod:`.in_container_calls`)."""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, final

import cloudpickle  # type: ignore[import-untyped]

from ..protocol import decoding, errors, framing, values
from ..protocol.messages import Call, Live
from ..runtime import launch, limits, live, network
from ..runtime.options import Options
from ..runtime.probe import UnsupportedHost
from .coverage import COVERAGE
from .in_container_calls import _exec, _read_changes, _serve_call, _snapshot
from .session import SessionState
from .trace import _show_trace


class DecodeTimeoutError(TimeoutError):
    """A call's result arrived in time but took longer than the rest of its timeout to
    decode on the host."""

    def __init__(self, timeout: float | None) -> None:
        super().__init__(
            f"the call's result could not be decoded within timeout={timeout:g}s: it is "
            "too large or too costly to rebuild (see docs/container-fixture.md)"
        )


@final
class Process:
    """A process started in a container by :meth:`Container.start`."""

    def __init__(
        self,
        live: live.LiveInit,
        ident: int,
        channel: socket.socket,
        explain: Callable[[int | None, BaseException | None], list[str]] = lambda s, e: [],
    ) -> None:
        self._live = live
        self._explain = explain  # names the limit that stopped it, if one did
        self._ident = ident
        self._channel = channel
        self._decoder = framing.Decoder()
        self._messages: list[framing.Message] = []
        self._finished = False
        self._outcome: tuple[bool, Any] | None = None  # (raised, value or exception)

    @property
    def alive(self) -> bool:
        """Whether it still runs (it has not sent its result nor ended)."""
        return not self._read(timeout=0)

    def kill(self) -> None:
        """SIGKILL it (a no-op once it ended)."""
        if not self._finished:
            self._live.kill(self._ident)

    def wait(self, timeout: float | None = None) -> Any:
        """Its function's return value, or raise what it raised: a builtin exception as
        the same type, anything else as :class:`pytest_rootless.RemoteError`. A crash
        raises RemoteError naming the signal or exit status; ``timeout`` (seconds)
        raises TimeoutError and leaves the process running. Decoding the result counts
        within ``timeout``: a result that takes longer to decode raises TimeoutError
        too (see protocol.values for the bounds of a result)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._read(timeout):
            raise TimeoutError(f"the process did not finish within {timeout} s")
        if self._outcome is None:
            try:
                self._outcome = (False, self._decode(deadline))
            except decoding.DecodeTimeout:
                self._outcome = (True, DecodeTimeoutError(timeout))
            except errors.RemoteError as exc:
                self._outcome = (True, exc)
            except Exception as exc:
                for line in self._explain(None, exc):
                    exc.add_note(f"rootless: {line}")
                self._outcome = (True, exc)
            finally:
                self._live.settle(self._ident)
        raised, value = self._outcome
        if raised:
            raise value
        return value

    def _decode(self, deadline: float | None = None) -> Any:
        for message in self._messages:
            if message["kind"] == Call.RESULT:
                if message.get("encoding") != values.ENCODING_VERSION:
                    raise errors.RemoteError(
                        "ProtocolError",
                        f"result encoding {message.get('encoding')!r}, expected "
                        f"{values.ENCODING_VERSION}",
                    )
                try:
                    return decoding.decode_value(message.get("value"), deadline)
                except ValueError as exc:
                    raise errors.RemoteError("ProtocolError", str(exc)) from None
            if message["kind"] == Call.ERROR:
                try:
                    error = errors.decode_exception(message.get("error"))
                except ValueError as exc:
                    raise errors.RemoteError("ProtocolError", str(exc)) from None
                raise error
        if self._decoder.error is not None or self._decoder.pending:
            why = self._decoder.error or "the channel closed in the middle of a frame"
            raise errors.RemoteError("ProtocolError", str(why))
        status, signum = self._live.status(self._ident)
        if signum is not None:
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = "unknown"
            what = f"was killed by signal {signum} ({name})"
        elif status is not None:
            what = f"exited with status {status} before returning"
        else:
            what = "ended before returning (the container is gone)"
        why = "".join(f"; {line}" for line in self._explain(signum, None))
        raise errors.RemoteError("ProcessCrashed", f"the process in the container {what}{why}")

    def _read(self, timeout: float | None) -> bool:
        """Read what it sends until its result arrives, its channel closes or init says
        it ended; False if ``timeout`` ran out first. Its result ends the wait even when
        a child it left behind keeps the channel open."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished:
            if self._live.closed:
                self.abandon()
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._channel, self._live.control], [], [], left)
            if self._channel in ready and self._receive():
                self._finish()
            elif self._live.control in ready:
                self._live.pump()
                if self._live.ended(self._ident):
                    # It ended: take what it sent (without waiting for an EOF that a
                    # child of it may hold back), then stop.
                    self._channel.setblocking(False)
                    while not self._receive():
                        pass
                    self._finish()
            elif not ready:
                return False
        return True

    def _receive(self) -> bool:
        """Take what is there; True when nothing more is to come."""
        try:
            chunk = self._channel.recv(1 << 20)
        except BlockingIOError:
            return True
        except OSError:
            return True  # reset by a killed process: what arrived is all there is
        if not chunk:
            return True
        for message in self._decoder.feed(chunk):
            if message["kind"] != Call.COVERAGE:
                self._messages.append(message)
                continue
            try:  # lines the call ran, for coverage.py measuring pytest
                COVERAGE.add(message, self._live.plan)
            except framing.ProtocolError:
                pass
        return any(m["kind"] in (Call.RESULT, Call.ERROR) for m in self._messages)

    def _finish(self) -> None:
        self._finished = True
        self._channel.close()

    def abandon(self) -> None:
        """The container is closing: stop listening (its processes are being killed)."""
        if not self._finished:
            self._finish()


def diff(before: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, str]:
    """What changed between two snapshots, by path: added, modified or deleted."""
    found = {path: "added" for path in now.keys() - before.keys()}
    found.update({path: "deleted" for path in before.keys() - now.keys()})
    found.update({p: "modified" for p in now.keys() & before.keys() if now[p] != before[p]})
    return dict(sorted(found.items()))


@final
class Container:
    """A live rootless container (docs/container-fixture.md). Usable as a context manager;
    :meth:`close` is idempotent and kills every process left in it."""

    def __init__(
        self, options: Options, state: SessionState, networks: network.Networks | None = None
    ) -> None:
        self._options = options
        self._state = state
        self._live: live.LiveInit | None = None
        self._cgroups: limits.Cgroups | None = None
        self._closed = False
        self._baseline: dict[str, list[Any]] = {}
        self._processes: weakref.WeakSet[Process] = weakref.WeakSet()
        # A named network: its address now, its cable when it starts (see runtime.network).
        self._own_networks: network.Networks | None = None
        self._network: network.Network | None = None
        self._member: network.Member | None = None
        if options.network not in ("none", "host"):
            if networks is None:  # made outside a test: a network of its own
                networks = self._own_networks = network.Networks(state.trace)
            self._network = networks.get(options.network)
            self._member = self._network.add(options.hostname)

    def _container(self) -> live.LiveInit:
        if self._closed:
            raise launch.ContainerError("the container is closed")
        if self._live is None:
            support = self._state.containers.probe()
            if not support.ok:
                raise UnsupportedHost(support.reason)
            # The timeout bounds each call (see run), not the container's life.
            options = dataclasses.replace(self._options, timeout=None)
            self._cgroups = self._state.containers.cgroups_for(options)
            spec = self._state.spec(options, None, cgroups=self._cgroups)
            if self._network is not None and self._member is not None:
                spec = dataclasses.replace(spec, network=self._network.join(self._member))
            try:
                self._live = live.LiveInit(spec, _serve_call)
            finally:
                network.release(spec.network)
            if self._state.trace:
                _show_trace(self._state, f"container {self.hostname!r}", self._live.trace)
            self._baseline = self._live_run(_snapshot)
        return self._live

    def _live_run(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        assert self._live is not None
        ident, channel = self._live.call(cloudpickle.dumps((fn, args, {})))
        return Process(self._live, ident, channel).wait()

    # -- running code
    def start(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Process:
        """Call ``fn(*args, **kwargs)`` in a new process in the container, in the
        background."""
        job = cloudpickle.dumps((fn, args, kwargs))
        live = self._container()
        ident, channel = live.call(job)
        process = Process(live, ident, channel, self._limit_notes)
        self._processes.add(process)
        return process

    def _limit_notes(self, signum: int | None, exception: BaseException | None) -> list[str]:
        if not (self._options.memory or self._options.pids or self._options.cpu):
            return []
        hits = self._cgroups.hits() if self._cgroups is not None else {}
        backend = self._state.containers.limits_backend()
        return limits.hit_lines(self._options, backend, hits, signum, exception)

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` in a new process in the container and return its
        result (see :meth:`Process.wait`). The container's ``timeout`` option bounds the
        call: past it the process is killed and TimeoutError raised."""
        process = self.start(fn, *args, **kwargs)
        try:
            return process.wait(self._options.timeout)
        except DecodeTimeoutError:
            raise
        except TimeoutError:
            process.kill()
            raise TimeoutError(
                f"the call did not finish within timeout={self._options.timeout:g}s "
                "(the container's option); it was killed"
            ) from None

    def exec(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float | None = None,
        check: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Like ``subprocess.run(argv, capture_output=True, text=True, ...)``, inside."""
        args = [os.fspath(a) for a in argv]
        where = os.fspath(cwd) if cwd is not None else None
        done = self.run(_exec, args, input, timeout, env, where)
        if done.get("timeout"):
            raise subprocess.TimeoutExpired(args, timeout or 0, done["stdout"], done["stderr"])
        result = subprocess.CompletedProcess(
            args, done["returncode"], done["stdout"], done["stderr"]
        )
        if check:
            result.check_returncode()
        return result

    # -- files, as the processes inside see them
    def read_bytes(self, path: str | os.PathLike[str]) -> bytes:
        data: bytes = self.run(Path(path).read_bytes)
        return data

    def read_text(
        self, path: str | os.PathLike[str], encoding: str | None = None, errors: str | None = None
    ) -> str:
        text: str = self.run(Path(path).read_text, encoding, errors)
        return text

    def write_bytes(self, path: str | os.PathLike[str], data: bytes) -> int:
        written: int = self.run(Path(path).write_bytes, data)
        return written

    def write_text(
        self,
        path: str | os.PathLike[str],
        data: str,
        encoding: str | None = None,
        errors: str | None = None,
    ) -> int:
        written: int = self.run(Path(path).write_text, data, encoding, errors)
        return written

    def changes(self) -> dict[str, str]:
        """Paths added, modified or deleted in the container's writable areas since it
        started: ``{path: "added" | "modified" | "deleted"}``, sorted by path. The
        ``writable`` paths are read from their overlays' upper layers (an exact record,
        whiteouts for deletions); the fresh tmpfs areas (/tmp, /var/tmp, /dev/shm, HOME)
        are compared with what they held at the start."""
        live = self._container()
        found = diff(self._baseline, self._live_run(_snapshot))
        if self._options.writable:
            ident, channel = live.call(b"", op=Live.READ_CHANGES)
            try:
                found.update(_read_changes(channel))
            finally:
                channel.close()
                live.status(ident)
                live.settle(ident)
        return dict(sorted(found.items()))

    # -- facts
    @property
    def hostname(self) -> str:
        return self._options.hostname

    @property
    def address(self) -> str | None:
        """Its IPv4 address on its named network (given when the container is made, in
        the order containers join: 198.18.k.2, .3, ...); None on ``"none"`` or ``"host"``."""
        return str(self._member.address.ip) if self._member is not None else None

    @property
    def address6(self) -> str | None:
        """Its IPv6 address on its named network (None there too if the kernel has no
        IPv6)."""
        member = self._member
        return str(member.address6.ip) if member is not None and member.address6 else None

    # -- faults
    def disconnect(self) -> None:
        """Pull its network cable: its end of the link on the network's bridge goes down.
        Nothing reaches it and nothing leaves it (connections time out or end in
        EHOSTUNREACH once ARP gives up), its own address and loopback stay; established
        connections resume after :meth:`reconnect` if they have not timed out."""
        self._set_link(False)

    def reconnect(self) -> None:
        """Plug its cable back in (undoes :meth:`disconnect`)."""
        self._set_link(True)

    def _set_link(self, up: bool) -> None:
        if self._network is None or self._member is None:
            raise ValueError(
                f"container {self.hostname!r} is on no named network (network="
                f"{self._options.network!r}): nothing to disconnect or reconnect"
            )
        self._container()  # its cable exists once it runs
        steps = self._network.set_link(self._member, up)
        if self._state.trace:
            what = "reconnect" if up else "disconnect"
            _show_trace(self._state, f"{what} {self.hostname!r}", steps, "network")

    @property
    def pid(self) -> int:
        """The host pid of the container's init (the container is started if need be)."""
        return self._container().init_pid

    # -- lifetime
    def close(self) -> None:
        """Kill every process in the container and free it (idempotent)."""
        self._closed = True
        for process in list(self._processes):
            process.abandon()
        if self._live is not None:
            self._live.close()
        if self._cgroups is not None:
            self._state.containers.remove_cgroups(self._cgroups)
            self._cgroups = None
        if self._own_networks is not None:
            self._own_networks.close()

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._live else "not started"
        return f"<Container hostname={self.hostname!r} {state}>"
