"""The kernel boundary: every system call the runtime makes, and nothing else.

Each function is named as the kernel (or its man page) names it, checks ``errno``
and raises :class:`SyscallError` naming the call and its arguments. Constants come
from the kernel headers cited next to them. When tracing is on, each call appends
one line to :data:`TRACE`, so ``--rootless-trace`` can show exactly what a container
is made of.

This is the only module that imports :mod:`ctypes`.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import fcntl
import functools
import os
import platform
import socket
import struct
import sys
import warnings
from collections.abc import Callable

__all__ = [
    "AT_FDCWD",
    "AT_RECURSIVE",
    "CAP_LAST_CAP_FALLBACK",
    "MNT_DETACH",
    "MOUNT_ATTR_RDONLY",
    "TRACE",
    "CloneFlag",
    "MountFlag",
    "SyscallError",
    "cap_drop_all",
    "clone",
    "close_range",
    "loopback_up",
    "mount",
    "mount_setattr",
    "pivot_root",
    "prctl",
    "sethostname",
    "setns",
    "trace_note",
    "umount2",
    "unshare",
    "write_id_maps",
]


class SyscallError(OSError):
    """A system call failed. ``str()`` names the call, its arguments and the errno."""

    def __init__(self, err: int, call: str) -> None:
        super().__init__(err, f"{call}: {os.strerror(err)} ({errno.errorcode.get(err, err)})")
        self.call = call


# --- tracing --------------------------------------------------------------------------------

#: Lines recorded by the calls below while :data:`TRACING` is true (one per syscall).
TRACE: list[str] = []
TRACING = False


def _trace(line: str) -> None:
    if TRACING:
        TRACE.append(line)


def trace_note(line: str) -> None:
    """Record a step that is not a syscall of ours (e.g. a file written), for the trace."""
    _trace(line)


# --- flags (include/uapi/linux/sched.h, include/uapi/linux/mount.h) ---------------------------


class CloneFlag(enum.IntFlag):
    """Namespace flags for clone(2) and unshare(2) (``include/uapi/linux/sched.h``)."""

    NEWNS = 0x00020000
    NEWCGROUP = 0x02000000
    NEWUTS = 0x04000000
    NEWIPC = 0x08000000
    NEWUSER = 0x10000000
    NEWPID = 0x20000000
    NEWNET = 0x40000000


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
SIGCHLD = 17
CAP_LAST_CAP_FALLBACK = 40  # CAP_CHECKPOINT_RESTORE, Linux 5.9

# prctl(2) options (include/uapi/linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

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
    },
}
_NR = _SYSCALLS.get(platform.machine(), {})

# libc functions release the GIL like any ctypes call. clone() must not: the child has to
# come out of the call holding the GIL, exactly as os.fork() leaves it (see clone()).
_libc = ctypes.CDLL(None, use_errno=True)
_libc_gil = ctypes.PyDLL(None, use_errno=True)


def _check(result: int, call: str | Callable[[], str]) -> int:
    """Raise on -1 with the call named; trace it. ``call`` may be a function, so that the
    description is only formatted when it is shown (mount is called ~30 times a container)."""
    if result == -1:
        err = ctypes.get_errno()
        text = call if isinstance(call, str) else call()
        _trace(f"{text} = -1 {errno.errorcode.get(err, err)}")
        raise SyscallError(err, text)
    if TRACING:
        TRACE.append(call if isinstance(call, str) else call())
    return result


def _nr(name: str) -> int:
    try:
        return _NR[name]
    except KeyError:
        raise SyscallError(
            errno.ENOSYS, f"{name}: no syscall number for {platform.machine()}"
        ) from None


# --- processes ------------------------------------------------------------------------------


def _flush_std_streams() -> None:
    """Before any fork: what sits in Python's stdout/stderr buffers would otherwise be
    written twice, once by each process."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def fork() -> int:
    """``os.fork()``, for a single-threaded copy of a possibly multi-threaded pytest (a
    relay, the zygote) from which the raw clone(2) then runs with no other thread (glibc's
    fork takes the malloc arena locks around the fork; a raw clone cannot).

    It must be CPython's own ``os.fork``: calling glibc's fork through ctypes returns to
    the eval loop in the child *before* ``PyOS_AfterFork_Child`` has run, and if another
    thread had asked for the GIL, the child hands the GIL to a thread that does not exist
    there and waits forever (it hung about one container in six with a busy thread).

    Python 3.12+ warns about forking a multi-threaded process: the child may deadlock on a
    lock another thread held. This child only clones containers' inits (which run pytest
    as every container's test process does); the warning for this call is acknowledged,
    and only it.
    """
    _flush_std_streams()
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*is multi-threaded, use of fork\(\)", category=DeprecationWarning
        )
        try:
            pid = os.fork()
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EAGAIN, "fork()") from None
    if pid:
        _trace(f"fork() = {pid}")
    return pid


def clone(flags: CloneFlag) -> int:
    """clone(2) with fork semantics plus namespace ``flags``; returns 0 in the child.

    Python has no ``os.fork(flags)``, so this does what ``os.fork()`` does (CPython's
    ``os_fork_impl``): ``PyOS_BeforeFork()``, the raw syscall with a NULL stack (the child
    continues on a copy of the parent's stack, like fork), then ``PyOS_AfterFork_Child()``
    or ``PyOS_AfterFork_Parent()``. The call goes through ``PyDLL`` so the GIL stays held
    across it. Creating the namespaces in the clone (rather than ``unshare`` in a forked
    child) saves one fork of the whole pytest process per container, and is allowed from a
    multi-threaded parent, where ``unshare(CLONE_NEWUSER)`` is EINVAL (user_namespaces(7)).

    glibc's own fork() takes the malloc arena locks around the fork; a raw clone does not.
    If another thread held one at that instant, the child's copy stays locked forever and
    its next malloc-using fork() deadlocks. So this is only called by a single-threaded
    process (the caller checks, and forks a single-threaded copy first otherwise).
    """
    _flush_std_streams()
    call = f"clone({_flag_names(flags, CloneFlag, 'CLONE_')}|SIGCHLD)"
    api = ctypes.pythonapi
    syscall = _libc_gil.syscall
    syscall.restype = ctypes.c_long
    api.PyOS_BeforeFork()
    pid = syscall(
        ctypes.c_long(_nr("clone")),
        ctypes.c_ulong(int(flags) | SIGCHLD),
        ctypes.c_void_p(0),
        ctypes.c_void_p(0),
        ctypes.c_void_p(0),
        ctypes.c_void_p(0),
    )
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid == -1:
        _trace(f"{call} = -1 {errno.errorcode.get(err, err)}")
        raise SyscallError(err, call)
    _trace(f"{call} = {pid}")
    return int(pid)


def unshare(flags: CloneFlag) -> None:
    """unshare(2): move the caller into new namespaces."""
    _check(
        _libc.unshare(ctypes.c_int(int(flags))),
        f"unshare({_flag_names(flags, CloneFlag, 'CLONE_')})",
    )


def setns(fd: int, nstype: CloneFlag, label: str) -> None:
    """setns(2): move the caller into the namespace ``fd`` refers to (``os.setns`` is
    Python 3.12+). ``label`` names the namespace in the trace and in errors."""
    _check(
        _libc.setns(ctypes.c_int(fd), ctypes.c_int(int(nstype))),
        f"setns({label}, {_flag_names(nstype, CloneFlag, 'CLONE_')})",
    )


def prctl(option: int, arg2: int = 0, name: str | None = None) -> int:
    """prctl(2) with one argument (the options used here take one)."""
    label = name or str(option)
    return _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        f"prctl({label}, {arg2})",
    )


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_LINUX_CAPABILITY_VERSION_3 = 0x20080522  # include/uapi/linux/capability.h


@functools.cache  # the kernel's, fixed until reboot: read once, not per container
def cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return CAP_LAST_CAP_FALLBACK


def cap_drop_all(last_cap: int) -> None:
    """Leave the caller with no capability at all (capabilities(7)).

    A forked, non-exec'd child keeps every capability it had: nothing drops them for
    us. Order matters: the bounding set first (PR_CAPBSET_DROP needs CAP_SETPCAP), then
    the ambient set, then capset(2) with empty effective/permitted/inheritable sets.
    """
    for cap in range(last_cap + 1):
        res = _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0)
        if res == -1 and ctypes.get_errno() != errno.EINVAL:  # EINVAL: cap unknown to kernel
            _check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")
    _trace(f"prctl(PR_CAPBSET_DROP, 0..{last_cap})")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "PR_CAP_AMBIENT_CLEAR_ALL")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(
        _libc.capset(ctypes.byref(header), ctypes.byref(data)),
        "capset(effective=0, permitted=0, inheritable=0)",
    )


# --- seccomp -----------------------------------------------------------------------------

# seccomp(2) with a classic BPF program over struct seccomp_data {int nr; __u32 arch;
# __u64 instruction_pointer; __u64 args[6];} (include/uapi/linux/seccomp.h, filter.h).
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_RET_K = 0x06  # BPF_RET | BPF_K
_SECCOMP_NR, _SECCOMP_ARCH, _SECCOMP_ARG1_LOW = 0, 4, 24  # offsets; args[1] low word (LE)
TIOCSTI = 0x5412  # include/uapi/asm-generic/ioctls.h
TIOCLINUX = 0x541C
#: Per architecture: AUDIT_ARCH_*, then each ioctl(2) number that reaches the kernel from a
#: process of it (x86_64 also runs i386 code, and x32 with bit 30 set in the number).
_IOCTL_ABIS = {
    "x86_64": ((0xC000003E, (16, 0x40000000 | 514)), (0x40000003, (54,))),
    "aarch64": ((0xC00000B7, (29,)), (0x40000028, (54,))),
}


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def _terminal_filter() -> list[tuple[int, int, int, int]]:
    """The program: for ioctl(2) in every ABI of this machine, EPERM when the request's low
    32 bits are TIOCSTI or TIOCLINUX (the kernel compares only those: a 64-bit comparison
    misses ``(1 << 32) | TIOCSTI``, CVE-2019-10063 in flatpak); everything else allowed."""
    allow, deny = ("ret", SECCOMP_RET_ALLOW), ("ret", SECCOMP_RET_ERRNO | errno.EPERM)
    program: list[tuple[str, int] | tuple[str, int, str, str]] = []
    for index, (arch, numbers) in enumerate(_IOCTL_ABIS.get(platform.machine(), ())):
        other = f"abi{index + 1}"
        program += [(f"abi{index}", 0), ("ld", _SECCOMP_ARCH), ("jeq", arch, "", other)]
        program += [("ld", _SECCOMP_NR)]
        program += [("jeq", nr, "request", "") for nr in numbers]
        program += [("ja-allow", 0)]
    program += [(f"abi{len(_IOCTL_ABIS.get(platform.machine(), ()))}", 0), ("ja-allow", 0)]
    program += [("request", 0), ("ld", _SECCOMP_ARG1_LOW)]
    program += [("jeq", TIOCSTI, "deny", ""), ("jeq", TIOCLINUX, "deny", ""), allow]
    program += [("deny", 0), deny, ("allow", 0), allow]
    # assemble: labels are (name, 0) entries; "" in a jump is the next instruction
    labels, count = {}, 0
    for op in program:
        if op[0] in ("ld", "jeq", "ret", "ja-allow"):
            count += 1
        else:
            labels[op[0]] = count
    code, pc = [], 0
    for op in program:
        if op[0] == "ld":
            code.append((_BPF_LD_W_ABS, 0, 0, op[1]))
        elif op[0] == "ret":
            code.append((_BPF_RET_K, 0, 0, op[1]))
        elif op[0] == "ja-allow":  # BPF_JA is relative too; jeq 0 == 0 always taken
            code.append((_BPF_JEQ_K, labels["allow"] - pc - 1, labels["allow"] - pc - 1, 0))
        elif op[0] == "jeq":
            _, k, true, false = op  # type: ignore[misc]
            jt = labels[true] - pc - 1 if true else 0
            jf = labels[false] - pc - 1 if false else 0
            code.append((_BPF_JEQ_K, jt, jf, k))
        else:
            continue
        pc += 1
    return code


#: Assembled once, on the host at import: every container process inherits it.
_TERMINAL_FILTER = _terminal_filter()


def seccomp_deny_terminal_injection() -> None:
    """Install :func:`_terminal_filter` (seccomp(2), SECCOMP_MODE_FILTER, after
    PR_SET_NO_NEW_PRIVS), as bubblewrap does for CVE-2017-5226: ``setsid()`` alone does not
    stop TIOCSTI, since a session leader can make an inherited tty that is nobody's
    controlling terminal its own (TIOCSCTTY) and type into it."""
    code = _TERMINAL_FILTER
    filters = (_SockFilter * len(code))(*(_SockFilter(*insn) for insn in code))
    prog = _SockFprog(len(code), filters)
    _check(
        _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0),
        "prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, [ioctl TIOCSTI|TIOCLINUX -> EPERM])",
    )


KEYCTL_JOIN_SESSION_KEYRING = 1  # include/uapi/linux/keyctl.h


def keyctl_join_session_keyring() -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): join a new anonymous session keyring."""
    res = _libc.syscall(
        ctypes.c_long(_nr("keyctl")), ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), None
    )
    _check(res, "keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)")


def close_range(first: int, last: int = 0xFFFFFFFF) -> None:
    """close_range(2): close fds first..last (used to close every inherited fd)."""
    res = _libc.syscall(
        ctypes.c_long(_nr("close_range")),
        ctypes.c_uint(first),
        ctypes.c_uint(last),
        ctypes.c_uint(0),
    )
    _check(res, f"close_range({first}, {'~0' if last == 0xFFFFFFFF else last})")


# --- user namespace -------------------------------------------------------------------------


def write_id_maps(
    inside_uid: int, outside_uid: int, inside_gid: int, outside_gid: int, pid: str = "self"
) -> None:
    """Write the one-line uid and gid maps of a fresh user namespace (user_namespaces(7)).

    ``setgroups`` must be ``deny`` before ``gid_map`` is written, or an unprivileged writer
    gets EPERM; each map can be written once.
    """
    for name, line in (
        ("setgroups", "deny"),
        ("uid_map", f"{inside_uid} {outside_uid} 1"),
        ("gid_map", f"{inside_gid} {outside_gid} 1"),
    ):
        path = f"/proc/{pid}/{name}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            _trace(f"write({path}, {line!r}) = -1 {errno.errorcode.get(exc.errno or 0, '?')}")
            raise SyscallError(exc.errno or errno.EIO, f"write({path}, {line!r})") from None
        _trace(f"write({path}, {line!r})")


# --- mounts ---------------------------------------------------------------------------------


def _flag_names(flags: int, kind: type[enum.IntFlag] | None = None, prefix: str = "MS_") -> str:
    """``MS_BIND|MS_REC`` rather than ``20480``: the trace reads like the man page."""
    kind = kind or MountFlag
    names = [f"{prefix}{flag.name}" for flag in kind if flag.value and flags & flag.value]
    rest = flags & ~sum(flag.value for flag in kind if flags & flag.value)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


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
        text = f"mount({label or source!r}, {target!r}, {fstype!r}, {_flag_names(flags)}"
        return text + (f", {data!r})" if data else ")")

    _check(
        _libc.mount(
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
    _check(
        _libc.umount2(target.encode(), ctypes.c_int(flags)),
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
    res = _libc.syscall(
        ctypes.c_long(_nr("mount_setattr")),
        ctypes.c_int(AT_FDCWD),
        path.encode(),
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )

    def call() -> str:
        what = "MOUNT_ATTR_RDONLY" if attr_set == MOUNT_ATTR_RDONLY else hex(attr_set)
        return f"mount_setattr({path!r}, {'AT_RECURSIVE' if recursive else 0}, {what})"

    _check(res, call)


FSOPEN_CLOEXEC = 0x1  # include/uapi/linux/mount.h
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1


def fsmount_detached(fstype: str, options: dict[str, str]) -> int:
    """A new file system that is mounted nowhere: fsopen(2), fsconfig(2) per option and
    FSCONFIG_CMD_CREATE, then fsmount(2). Returns the mount's fd; its files are reached
    through it (``/proc/self/fd/N/...``) by whoever holds it, and by nobody else: the
    store of a container's overlay upper layers."""
    nr_config = ctypes.c_long(_nr("fsconfig"))
    fs = _check(
        _libc.syscall(ctypes.c_long(_nr("fsopen")), fstype.encode(), FSOPEN_CLOEXEC),
        f"fsopen({fstype!r}, FSOPEN_CLOEXEC)",
    )
    try:
        for key, value in options.items():
            _check(
                _libc.syscall(nr_config, fs, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0),
                f"fsconfig(FSCONFIG_SET_STRING, {key!r}, {value!r})",
            )
        _check(
            _libc.syscall(nr_config, fs, FSCONFIG_CMD_CREATE, None, None, 0),
            "fsconfig(FSCONFIG_CMD_CREATE)",
        )
        return _check(
            _libc.syscall(ctypes.c_long(_nr("fsmount")), fs, FSMOUNT_CLOEXEC, 0),
            "fsmount(FSMOUNT_CLOEXEC)",
        )
    finally:
        os.close(fs)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) (no glibc wrapper)."""
    res = _libc.syscall(ctypes.c_long(_nr("pivot_root")), new_root.encode(), put_old.encode())
    _check(res, f"pivot_root({new_root!r}, {put_old!r})")


# --- UTS and network ------------------------------------------------------------------------


def sethostname(name: str) -> None:
    """sethostname(2)."""
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname({name!r})")


SIOCGIFFLAGS = 0x8913  # include/uapi/linux/sockios.h
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sh22x"  # struct ifreq: char ifr_name[IFNAMSIZ]; short ifr_flags; padding


def loopback_up() -> None:
    """Bring ``lo`` up: a new network namespace starts with it down (netdevice(7))."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack(_IFREQ, b"lo", 0)
        try:
            flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))
        except OSError as exc:
            err = errno.errorcode.get(exc.errno or 0)
            _trace(f"ioctl(SIOCSIFFLAGS, 'lo', IFF_UP) = -1 {err}")
            raise SyscallError(
                exc.errno or errno.EIO, "ioctl(SIOCSIFFLAGS, 'lo', IFF_UP)"
            ) from None
    _trace("ioctl(SIOCSIFFLAGS, 'lo', IFF_UP)")


def set_tracing(on: bool) -> None:
    global TRACING
    TRACING = on
    TRACE.clear()


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


RESOLVE_NO_SYMLINKS = 0x04  # include/uapi/linux/openat2.h


def open_dir_nofollow(path: str) -> int:
    """openat2(2) with RESOLVE_NO_SYMLINKS: an O_PATH fd of the directory ``path``, or
    ELOOP if *any* component of it is a symlink (O_NOFOLLOW only checks the last one)."""
    how = _OpenHow(os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS)
    res = _libc.syscall(
        ctypes.c_long(_nr("openat2")),
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
