"""Finding processes the way an operator would: by a token in their argv (or environment),
scanning ``/proc``.

One reading decides: :func:`tagged` reads ``/proc`` once and gives the pids it found with
what their argv was at that moment, and :func:`settle` polls and returns the reading that
ended the polling, for the caller to assert on. Asserting on a second reading is a race: a
process in the middle of an exec, or of being reaped, reads differently from one moment to
the next.

Stdlib only and self-contained: the tests copy this file into their inner pytest projects
(:func:`source`), where it is imported as ``procscan``, in the container too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: How often :func:`settle` reads again.
POLL = 0.05


def source() -> str:
    """This module's text, to copy into an inner project (``makepyfile(procscan=...)``)."""
    return Path(__file__).read_text()


def pids(proc: str = "/proc") -> list[int]:
    """Every pid ``proc`` lists, sorted: one listing."""
    return sorted(int(name) for name in os.listdir(proc) if name.isdigit())


def _read(pid: int, what: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return None


def _split(cmdline: bytes) -> list[str]:
    args = cmdline.decode(errors="replace").split("\0")
    return args[:-1] if cmdline.endswith(b"\0") else args


def argv(pid: int) -> list[str]:
    """A process's argv (empty once it is gone, for a zombie, or while it cannot be read)."""
    cmdline = _read(pid, "cmdline")
    return _split(cmdline) if cmdline else []


def stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name: ``[0]`` is the state,
    ``[1]`` the parent's pid, ``[19]`` the start time (proc_pid_stat(5), field 22); None
    once the process is gone."""
    data = _read(pid, "stat")
    return None if data is None else data.decode(errors="replace").rsplit(")", 1)[1].split()


def tagged(token: str, *, environ: bool = False) -> dict[int, list[str]]:
    """One reading of ``/proc``: the processes, other than this one, whose argv holds
    ``token`` (with ``environ``, or whose environment does: the environment of another
    user's process, or of a non-dumpable one, is unreadable, its argv always is), each
    with its argv as it was read."""
    wanted = token.encode()
    found: dict[int, list[str]] = {}
    for pid in pids():
        if pid == os.getpid():
            continue
        cmdline = _read(pid, "cmdline")
        if cmdline is None:
            continue
        if wanted in cmdline or (environ and wanted in (_read(pid, "environ") or b"")):
            found[pid] = _split(cmdline)
    return found


def settle(reading: Callable[[], T], done: Callable[[T], bool], within: float) -> T:
    """``reading()`` again and again until ``done`` says so of one, or ``within`` seconds
    have passed: the last reading, the one to assert on (never a fresh one)."""
    deadline = time.monotonic() + within
    while not done(found := reading()) and time.monotonic() < deadline:
        time.sleep(POLL)
    return found


def gone(token: str, within: float, *, environ: bool = False) -> dict[int, list[str]]:
    """Wait (boundedly) until no process carries ``token``; those left in the reading
    that ended the wait (``{}``: none)."""
    return settle(lambda: tagged(token, environ=environ), lambda left: not left, within)
