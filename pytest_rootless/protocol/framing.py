"""Framing between a container and the host: length-prefixed JSON, never pickle.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding
one object with a ``"kind"`` key. Only data comes up from a container: the host decodes
JSON and nothing else, so a hostile test cannot get code run on the host through what it
sends (unpickling would run arbitrary ``__reduce__`` code). Things go *down* into a
container by fork (inheritance), not through this channel.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
from collections.abc import Sequence
from typing import Any, Final

#: The largest frame the host accepts; a claim above it is a protocol error, not an
#: allocation. Reports with a lot of captured output stay well below this.
MAX_FRAME: Final = 64 * 1024 * 1024
_HEADER: Final = struct.Struct(">I")

# Bound once, at import: a test process sends its reports while the test runs, and a test
# may patch os.write, os.read or json for its duration (``mock.patch("os.write")``); the
# machinery must not go through the patched names (tests/parity_corpus/case_patched_stdlib.py).
_write = os.write
_fspath = os.fspath
_send_fds = socket.send_fds

Message = dict[str, Any]


class ProtocolError(Exception):
    """The container sent something that is not a well-formed frame."""


def _default(obj: object) -> object:
    # Reports may carry values JSON cannot hold (a user_properties value, a plugin's
    # attribute): send their repr rather than fail the whole report.
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return _fspath(obj)
    return repr(obj)


_dumps = json.JSONEncoder(separators=(",", ":"), default=_default).encode


def _plain_keys(obj: object) -> object:
    """The same data with every dict key a string (JSON allows no others)."""
    if isinstance(obj, dict):
        return {
            key if isinstance(key, str) else repr(key): _plain_keys(value)
            for key, value in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [_plain_keys(item) for item in obj]
    return obj


def encode(message: Message) -> bytes:
    try:
        body = _dumps(message).encode()
    except (TypeError, ValueError):  # e.g. record_property("m", {(0, 1): 0.5})
        body = _dumps(_plain_keys(message)).encode()
    return _HEADER.pack(len(body)) + body


def send(fd: int, message: Message) -> None:
    """Write one frame to ``fd`` (blocking; retried until every byte is written)."""
    write_all(fd, encode(message))


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data``; a write that makes no progress is an error, never a
    retry forever."""
    view = memoryview(data)
    while view:
        written = _write(fd, view)
        if not isinstance(written, int) or not 0 < written <= len(view):
            raise OSError(
                f"pytest-rootless: write({fd}) returned {written!r} with {len(view)} of "
                f"{len(data)} bytes still to write: no progress, the frame is abandoned"
            )
        view = view[written:]


class Decoder:
    """Incremental decoder: feed bytes as they arrive, take whole messages out.

    The frames before a malformed one are still returned; the first error is kept in
    :attr:`error` and nothing after it is decoded.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame
        self.error: ProtocolError | None = None

    def feed(self, chunk: bytes) -> list[Message]:
        if self.error is not None:
            return []
        self._buffer += chunk
        messages: list[Message] = []
        try:
            while len(self._buffer) >= _HEADER.size:
                message = self._next()
                if message is None:
                    break
                messages.append(message)
        except ProtocolError as exc:
            self.error = exc
            self._buffer.clear()
        return messages

    def _next(self) -> Message | None:
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > self._max_frame:
            raise ProtocolError(
                f"a frame claims {length} bytes, more than the {self._max_frame} allowed"
            )
        end = _HEADER.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        try:
            message = json.loads(body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError,
            # integers past the 4300-digit limit, and nesting deep enough to recurse out
            raise ProtocolError(f"a frame is not JSON: {exc!s:.200}") from None
        if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
            raise ProtocolError("a frame is not an object with a 'kind'")
        return message

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered (non-zero at EOF means truncation)."""
        return len(self._buffer)


# --- packets: one frame per SOCK_SEQPACKET packet, fds alongside (unix(7), SCM_RIGHTS) -------


def send_packet(
    sock: socket.socket, message: Message, fds: Sequence[int] = (), flags: int = 0
) -> None:
    """Send ``message`` as one frame in one packet, with ``fds`` passed along (``flags``:
    send(2)'s, such as MSG_DONTWAIT)."""
    _send_fds(sock, [encode(message)], list(fds), flags)


def decode_packet(packet: bytes) -> Message:
    """The one frame a packet holds; ProtocolError if it holds anything else."""
    decoder = Decoder()
    messages = decoder.feed(packet)
    if len(messages) != 1 or decoder.pending:
        raise ProtocolError("a packet does not hold exactly one frame")
    return messages[0]


def receive_packet(sock: socket.socket, max_fds: int) -> tuple[Message | None, list[int]]:
    """One packet's frame and the fds that came with it (at most ``max_fds``, close-on-
    exec); ``(None, [])`` once the other end has closed (or reset) the socket. On a packet
    that is not one frame, its fds are closed and ProtocolError raised."""
    try:
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, max_fds, socket.MSG_CMSG_CLOEXEC)
    except ConnectionError:
        return None, []
    message = None
    try:
        if data:
            message = decode_packet(data)
    finally:
        if message is None:  # closed, or not a frame: nobody will take the fds
            for fd in fds:
                os.close(fd)
    return (message, fds) if message is not None else (None, [])


def readable(fd: int | socket.socket, timeout: float | None = 0) -> bool:
    """Whether ``fd`` has something to read (or its other end closed) within ``timeout``
    seconds (None: wait). poll(2), not select(2): pytest's copies may hold fds past
    select's FD_SETSIZE (1024)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else int(timeout * 1000)))
