"""mount(2) and its relatives: binds, remounts, mount_setattr(2), a detached fsmount(2),
pivot_root(2), and the openat2(2) that never follows a symlink. Each one named as its man
page names it, errno-checked and traced (:mod:`.libc`)."""

from __future__ import annotations

import ctypes
import enum
import os

from .libc import SyscallError, check, flag_names, libc, nr

FSOPEN_CLOEXEC = 0x1  # include/uapi/linux/mount.h
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1

RESOLVE_NO_SYMLINKS = 0x04  # include/uapi/linux/openat2.h


class MountFlag(enum.IntFlag):
    """mount(2) flags (``include/uapi/linux/mount.h``)."""

    NONE = 0
    RDONLY = 1
    NOSUID = 2
    NODEV = 4
    NOEXEC = 8
    REMOUNT = 32
    SILENT = 32768
    BIND = 4096
    REC = 16384
    PRIVATE = 1 << 18
    SLAVE = 1 << 19
    NOATIME = 1024
    NODIRATIME = 2048
    RELATIME = 1 << 21
    STRICTATIME = 1 << 24


MNT_DETACH = 2  # umount2(2)


AT_FDCWD = -100  # include/uapi/linux/fcntl.h


AT_RECURSIVE = 0x8000  # include/uapi/linux/fcntl.h


MOUNT_ATTR_RDONLY = 0x00000001  # include/uapi/linux/mount.h


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
    *,
    label: str | None = None,
) -> None:
    """mount(2). ``label`` replaces ``source`` in messages (e.g. a /proc/self/fd path)."""

    def call() -> str:
        names = flag_names(flags, MountFlag, "MS_")
        text = f"mount({label or source!r}, {target!r}, {fstype!r}, {names}"
        return text + (f", {data!r})" if data else ")")

    check(
        libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data is not None else None,
        ),
        call,
    )


def umount2(target: str, flags: int) -> None:
    """umount2(2)."""
    check(
        libc.umount2(target.encode(), ctypes.c_int(flags)),
        f"umount2({target!r}, {'MNT_DETACH' if flags == MNT_DETACH else flags})",
    )


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def mount_setattr(path: str, attr_set: int, *, recursive: bool = True) -> None:
    """mount_setattr(2) (Linux 5.12): set ``attr_set`` on a mount and, with ``recursive``,
    every mount below it in one call. A plain ``MS_REMOUNT`` only changes the top mount,
    so submounts of a read-only bind would stay writable."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    res = libc.syscall(
        ctypes.c_long(nr("mount_setattr")),
        ctypes.c_int(AT_FDCWD),
        path.encode(),
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )

    def call() -> str:
        what = "MOUNT_ATTR_RDONLY" if attr_set == MOUNT_ATTR_RDONLY else hex(attr_set)
        return f"mount_setattr({path!r}, {'AT_RECURSIVE' if recursive else 0}, {what})"

    check(res, call)


def fsmount_detached(fstype: str, options: dict[str, str]) -> int:
    """A new file system that is mounted nowhere: fsopen(2), fsconfig(2) per option and
    FSCONFIG_CMD_CREATE, then fsmount(2). Returns the mount's fd; its files are reached
    through it (``/proc/self/fd/N/...``) by whoever holds it, and by nobody else: the
    store of a container's overlay upper layers."""
    nr_config = ctypes.c_long(nr("fsconfig"))
    fs = check(
        libc.syscall(ctypes.c_long(nr("fsopen")), fstype.encode(), FSOPEN_CLOEXEC),
        f"fsopen({fstype!r}, FSOPEN_CLOEXEC)",
    )
    try:
        for key, value in options.items():
            check(
                libc.syscall(nr_config, fs, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0),
                f"fsconfig(FSCONFIG_SET_STRING, {key!r}, {value!r})",
            )
        check(
            libc.syscall(nr_config, fs, FSCONFIG_CMD_CREATE, None, None, 0),
            "fsconfig(FSCONFIG_CMD_CREATE)",
        )
        return check(
            libc.syscall(ctypes.c_long(nr("fsmount")), fs, FSMOUNT_CLOEXEC, 0),
            "fsmount(FSMOUNT_CLOEXEC)",
        )
    finally:
        os.close(fs)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) (no glibc wrapper)."""
    res = libc.syscall(ctypes.c_long(nr("pivot_root")), new_root.encode(), put_old.encode())
    check(res, f"pivot_root({new_root!r}, {put_old!r})")


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def open_dir_nofollow(path: str) -> int:
    """openat2(2) with RESOLVE_NO_SYMLINKS: an O_PATH fd of the directory ``path``, or
    ELOOP if *any* component of it is a symlink (O_NOFOLLOW only checks the last one)."""
    how = _OpenHow(os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS)
    res = libc.syscall(
        ctypes.c_long(nr("openat2")),
        ctypes.c_int(AT_FDCWD),
        path.encode(),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if res == -1:
        err = ctypes.get_errno()
        raise SyscallError(err, f"openat2({path!r}, O_PATH|O_DIRECTORY, RESOLVE_NO_SYMLINKS)")
    return int(res)


def fd_path(fd: int) -> str:
    """The magic link through which mount(2) can use an O_PATH fd as a bind source."""
    return f"/proc/self/fd/{fd}"


def open_path(path: str) -> int:
    """open(path, O_PATH|O_CLOEXEC): pin a bind source before its path gets covered."""
    return os.open(path, os.O_PATH | os.O_CLOEXEC)
