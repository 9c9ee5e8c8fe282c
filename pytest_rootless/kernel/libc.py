"""The ctypes boundary of the kernel layer: the C library, the errno check every call goes
through (raising :class:`SyscallError`, which names the call and its arguments), the
syscall numbers glibc does not wrap, and the trace ``--rootless-trace`` prints.

Only the modules of this package import :mod:`ctypes`.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import platform
from collections.abc import Callable


class SyscallError(OSError):
    """A system call failed. ``str()`` names the call, its arguments and the errno."""

    def __init__(self, err: int, call: str) -> None:
        super().__init__(err, f"{call}: {os.strerror(err)} ({errno.errorcode.get(err, err)})")
        self.call = call


#: Lines recorded by the calls below while :data:`TRACING` is true (one per syscall).
TRACE: list[str] = []


TRACING = False


def trace(line: str) -> None:
    if TRACING:
        TRACE.append(line)


def trace_note(line: str) -> None:
    """Record a step that is not a syscall of ours (e.g. a file written), for the trace."""
    trace(line)


# Syscall numbers for the calls glibc does not wrap (arch/*/entry/syscalls).
_SYSCALLS = {
    "x86_64": {
        "clone": 56,
        "pivot_root": 155,
        "close_range": 436,
        "openat2": 437,
        "mount_setattr": 442,
        "keyctl": 250,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
    },
    "aarch64": {
        "clone": 220,
        "pivot_root": 41,
        "close_range": 436,
        "openat2": 437,
        "mount_setattr": 442,
        "keyctl": 219,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
    },
}


_NR = _SYSCALLS.get(platform.machine(), {})


# libc functions release the GIL like any ctypes call. clone() must not: the child has to
# come out of the call holding the GIL, exactly as os.fork() leaves it (see clone()).
libc = ctypes.CDLL(None, use_errno=True)


libc_gil = ctypes.PyDLL(None, use_errno=True)


def check(result: int, call: str | Callable[[], str]) -> int:
    """Raise on -1 with the call named; trace it. ``call`` may be a function, so that the
    description is only formatted when it is shown (mount is called ~30 times a container)."""
    if result == -1:
        err = ctypes.get_errno()
        text = call if isinstance(call, str) else call()
        trace(f"{text} = -1 {errno.errorcode.get(err, err)}")
        raise SyscallError(err, text)
    if TRACING:
        TRACE.append(call if isinstance(call, str) else call())
    return result


def nr(name: str) -> int:
    try:
        return _NR[name]
    except KeyError:
        raise SyscallError(
            errno.ENOSYS, f"{name}: no syscall number for {platform.machine()}"
        ) from None


def set_tracing(on: bool) -> None:
    global TRACING
    TRACING = on
    TRACE.clear()


def flag_names(flags: int, kind: type[enum.IntFlag], prefix: str) -> str:
    """``MS_BIND|MS_REC`` rather than ``20480``: the trace reads like the man page."""
    names = [f"{prefix}{flag.name}" for flag in kind if flag.value and flags & flag.value]
    rest = flags & ~sum(flag.value for flag in kind if flags & flag.value)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"
