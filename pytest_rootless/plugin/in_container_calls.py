"""What a live container's call process runs (after fork, inside the container): a
function shipped in with cloudpickle, its result sent back as data; ``exec``; the
snapshot behind ``changes()``."""

from __future__ import annotations

import os
import pickle
import socket
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..protocol import errors, framing, values
from ..protocol.messages import CHANGE_KINDS, Call
from ..runtime import launch
from .in_container_coverage import ContainerCoverage


def _serve_call(fd: int) -> int:
    """In the container: read a pickled (fn, args, kwargs), call it, send the outcome."""
    with socket.socket(fileno=os.dup(fd)) as channel:
        chunks = []
        while chunk := channel.recv(1 << 20):
            chunks.append(chunk)
    message: framing.Message
    measuring = ContainerCoverage.start()  # coverage.py measures pytest: this call too
    try:
        fn, args, kwargs = pickle.loads(b"".join(chunks))
        value = values.encode_value(fn(*args, **kwargs))
        message = {"kind": Call.RESULT, "encoding": values.ENCODING_VERSION, "value": value}
    except values.EncodeError as exc:
        message = {"kind": Call.ERROR, "error": errors.encode_exception(TypeError(str(exc)))}
    except BaseException as exc:
        message = {"kind": Call.ERROR, "error": errors.encode_exception(exc)}
    measured = measuring.finish() if measuring is not None else None
    if measured is not None:
        framing.write_all(fd, framing.encode(measured))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    data = framing.encode(message)
    if len(data) > framing.MAX_FRAME:
        too_big = TypeError(
            f"result: {len(data)} bytes once encoded, more than the {framing.MAX_FRAME} a "
            "container can return; return less, or write it to a file in tmp_path"
        )
        data = framing.encode({"kind": Call.ERROR, "error": errors.encode_exception(too_big)})
    framing.write_all(fd, data)
    return 0


def _exec(
    argv: Sequence[str],
    input: str | None,
    timeout: float | None,
    env: Mapping[str, str] | None,
    cwd: str | None,
) -> dict[str, Any]:
    """In the container: subprocess.run with text output captured, as data."""
    try:
        done = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return {"timeout": True, "stdout": _text(exc.stdout), "stderr": _text(exc.stderr)}
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def _snapshot() -> dict[str, list[Any]]:
    """In the container: every entry of the writable areas (/tmp, /var/tmp, /dev/shm,
    HOME) with what identifies it (type, mode, and for files size and mtime; for links
    the target). Each area is walked on its own file system only: a directory bound from
    the host under /tmp is the host's, not a change of the container's."""
    entries: dict[str, list[Any]] = {}
    for area in ("/tmp", "/var/tmp", "/dev/shm", os.environ.get("HOME", "/tmp")):
        try:
            device = os.lstat(area).st_dev
        except OSError:
            continue
        for root, dirs, files in os.walk(area):
            for name in [*dirs, *files]:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if st.st_dev != device:
                    if name in dirs:
                        dirs.remove(name)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    entries[path] = ["link", os.readlink(path)]
                elif stat.S_ISDIR(st.st_mode):
                    entries[path] = ["dir", st.st_mode]
                else:
                    entries[path] = ["file", st.st_mode, st.st_size, st.st_mtime_ns]
    return entries


def _read_changes(channel: socket.socket) -> dict[str, str]:
    """The one frame init's reader of the upper layers sends, checked (it is data from
    inside the container like any other)."""
    decoder = framing.Decoder()
    messages: list[framing.Message] = []
    while chunk := channel.recv(1 << 20):
        messages += decoder.feed(chunk)
    for message in messages:
        changes = message.get("changes")
        if message["kind"] == Call.CHANGES and isinstance(changes, dict):
            return {str(k): v for k, v in changes.items() if v in CHANGE_KINDS}
        if message["kind"] == Call.SETUP_ERROR:
            raise launch.ContainerError(f"reading the changes failed: {message.get('message')}")
    raise launch.ContainerError("the container sent no changes")


def _text(output: str | bytes | None) -> str | None:
    return output.decode(errors="replace") if isinstance(output, bytes) else output
