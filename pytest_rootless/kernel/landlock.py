"""Landlock (landlock(7)): an unprivileged process confines itself and its future children,
no namespace needed. The three system calls, named as their man pages name them, and the
constants of ``include/uapi/linux/landlock.h`` that the sandbox tier uses.

Each call checks ``errno`` and raises :class:`~.libc.SyscallError` naming it.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os

from .libc import check, flag_names, libc, nr

#: landlock_create_ruleset(2) flag: return the highest ABI version the kernel supports.
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
#: landlock_add_rule(2) rule type: a file hierarchy (struct landlock_path_beneath_attr).
LANDLOCK_RULE_PATH_BENEATH = 1


class AccessFs(enum.IntFlag):
    """``LANDLOCK_ACCESS_FS_*``; the comment says the ABI version that brought each."""

    EXECUTE = 1 << 0  # 1
    WRITE_FILE = 1 << 1
    READ_FILE = 1 << 2
    READ_DIR = 1 << 3
    REMOVE_DIR = 1 << 4
    REMOVE_FILE = 1 << 5
    MAKE_CHAR = 1 << 6
    MAKE_DIR = 1 << 7
    MAKE_REG = 1 << 8
    MAKE_SOCK = 1 << 9
    MAKE_FIFO = 1 << 10
    MAKE_BLOCK = 1 << 11
    MAKE_SYM = 1 << 12
    REFER = 1 << 13  # 2
    TRUNCATE = 1 << 14  # 3
    IOCTL_DEV = 1 << 15  # 5


class Scope(enum.IntFlag):
    """``LANDLOCK_SCOPE_*`` (ABI 6): what a sandboxed process may not reach outside its
    own Landlock domain."""

    ABSTRACT_UNIX_SOCKET = 1 << 0
    SIGNAL = 1 << 1


#: Every right that changes the file system, by the ABI version that has it.
_WRITE_RIGHTS_BY_ABI = (
    (
        1,
        AccessFs.WRITE_FILE
        | AccessFs.REMOVE_DIR
        | AccessFs.REMOVE_FILE
        | AccessFs.MAKE_CHAR
        | AccessFs.MAKE_DIR
        | AccessFs.MAKE_REG
        | AccessFs.MAKE_SOCK
        | AccessFs.MAKE_FIFO
        | AccessFs.MAKE_BLOCK
        | AccessFs.MAKE_SYM,
    ),
    (2, AccessFs.REFER),
    (3, AccessFs.TRUNCATE),
)

#: The first ABI version with scopes (signals, abstract unix sockets).
SCOPE_ABI = 6


def write_rights(abi: int) -> AccessFs:
    """The rights that change the file system which kernels of ``abi`` can restrict."""
    rights = AccessFs(0)
    for version, more in _WRITE_RIGHTS_BY_ABI:
        if abi >= version:
            rights |= more
    return rights


def scopes(abi: int) -> Scope:
    return Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL if abi >= SCOPE_ABI else Scope(0)


class _RulesetAttr(ctypes.Structure):
    """struct landlock_ruleset_attr; its size tells the kernel which fields we know."""

    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    """struct landlock_path_beneath_attr: packed in the kernel's header."""

    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def landlock_abi_version() -> int:
    """landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION): the kernel's
    Landlock ABI version. Raises SyscallError (ENOSYS: too old a kernel or no syscall
    number here; EOPNOTSUPP: built in but not enabled at boot)."""
    return check(
        libc.syscall(
            ctypes.c_long(nr("landlock_create_ruleset")),
            ctypes.c_void_p(0),
            ctypes.c_size_t(0),
            ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION),
        ),
        "landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)",
    )


def landlock_create_ruleset(handled_access_fs: AccessFs, scoped: Scope, abi: int) -> int:
    """landlock_create_ruleset(2): a ruleset restricting ``handled_access_fs`` and the
    ``scoped`` reach; returns its fd. The attribute is as long as ``abi`` knows it (the
    ``scoped`` field is ABI 6's: older kernels refuse a longer struct with E2BIG)."""
    attr = _RulesetAttr(int(handled_access_fs), 0, int(scoped))
    size = ctypes.sizeof(attr) if abi >= SCOPE_ABI else _RulesetAttr.scoped.offset
    return check(
        libc.syscall(
            ctypes.c_long(nr("landlock_create_ruleset")),
            ctypes.byref(attr),
            ctypes.c_size_t(size),
            ctypes.c_uint32(0),
        ),
        lambda: (
            f"landlock_create_ruleset({{handled_access_fs="
            f"{flag_names(handled_access_fs, AccessFs, 'LANDLOCK_ACCESS_FS_')}, "
            f"scoped={flag_names(scoped, Scope, 'LANDLOCK_SCOPE_')}}}, {size}, 0)"
        ),
    )


def landlock_add_rule(ruleset_fd: int, path: str, allowed_access: AccessFs) -> None:
    """landlock_add_rule(2) with LANDLOCK_RULE_PATH_BENEATH: ``allowed_access`` under
    ``path`` (opened O_PATH for the call)."""
    parent = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        attr = _PathBeneathAttr(int(allowed_access), parent)
        check(
            libc.syscall(
                ctypes.c_long(nr("landlock_add_rule")),
                ctypes.c_int(ruleset_fd),
                ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                ctypes.byref(attr),
                ctypes.c_uint32(0),
            ),
            lambda: (
                f"landlock_add_rule({ruleset_fd}, LANDLOCK_RULE_PATH_BENEATH, {{"
                f"{flag_names(allowed_access, AccessFs, 'LANDLOCK_ACCESS_FS_')}, {path!r}}}, 0)"
            ),
        )
    finally:
        os.close(parent)


def landlock_restrict_self(ruleset_fd: int) -> None:
    """landlock_restrict_self(2): enforce the ruleset on this thread and every child it
    makes from now on (PR_SET_NO_NEW_PRIVS must be set first, or EPERM)."""
    check(
        libc.syscall(
            ctypes.c_long(nr("landlock_restrict_self")),
            ctypes.c_int(ruleset_fd),
            ctypes.c_uint32(0),
        ),
        f"landlock_restrict_self({ruleset_fd}, 0)",
    )


def unavailable_reason(err: int) -> str:
    """Why Landlock cannot be used, from the errno of the version probe."""
    if err == errno.EOPNOTSUPP:
        return "Landlock is built into this kernel but not enabled (add landlock to lsm= at boot)"
    if err == errno.ENOSYS:
        return "this kernel has no Landlock (Linux 5.13 or newer, with CONFIG_SECURITY_LANDLOCK)"
    return f"Landlock cannot be used here ({os.strerror(err)})"
