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
import struct
from typing import Any, Final

#: The largest frame the host accepts; a claim above it is a protocol error, not an
#: allocation. Reports with a lot of captured output stay well below this.
MAX_FRAME: Final = 64 * 1024 * 1024
_HEADER: Final = struct.Struct(">I")

Message = dict[str, Any]


class ProtocolError(Exception):
    """The container sent something that is not a well-formed frame."""


def _default(obj: object) -> object:
    # Reports may carry values JSON cannot hold (a user_properties value, a plugin's
    # attribute): send their repr rather than fail the whole report.
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def encode(message: Message) -> bytes:
    body = json.dumps(message, default=_default, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def send(fd: int, message: Message) -> None:
    """Write one frame to ``fd`` (blocking; retried until every byte is written)."""
    data = memoryview(encode(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]


class Decoder:
    """Incremental decoder: feed bytes as they arrive, take whole messages out."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, chunk: bytes) -> list[Message]:
        self._buffer += chunk
        messages: list[Message] = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > self._max_frame:
                raise ProtocolError(
                    f"a frame claims {length} bytes, more than the {self._max_frame} allowed"
                )
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            try:
                message = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ProtocolError(f"a frame is not JSON: {exc}") from None
            if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
                raise ProtocolError("a frame is not an object with a 'kind'")
            messages.append(message)
        return messages

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered (non-zero at EOF means truncation)."""
        return len(self._buffer)
