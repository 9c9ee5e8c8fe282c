"""The kernel boundary for processes: fork and clone, namespaces, prctl, capabilities,
seccomp, id maps, the hostname and the loopback (mounts are in :mod:`.mount`).

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
import resource
import socket
import struct
import sys
import warnings
from collections.abc import Callable

from . import procfs, seccomp
from .libc import SyscallError, check, flag_names, libc, libc_gil, nr, trace

# --- flags (include/uapi/linux/sched.h, include/uapi/linux/prctl.h) ---------------------------


class CloneFlag(enum.IntFlag):
    """Flags for clone(2) and unshare(2) (``include/uapi/linux/sched.h``): the namespace
    flags, and the two :func:`clone_vm_vfork` uses."""

    VM = 0x00000100
    VFORK = 0x00004000
    NEWNS = 0x00020000
    NEWCGROUP = 0x02000000
    NEWUTS = 0x04000000
    NEWIPC = 0x08000000
    NEWUSER = 0x10000000
    NEWPID = 0x20000000
    NEWNET = 0x40000000


SIGCHLD = 17
CAP_LAST_CAP_FALLBACK = 40  # CAP_CHECKPOINT_RESTORE, Linux 5.9

# prctl(2) options (include/uapi/linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_GET_NAME = 16
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


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
        trace(f"fork() = {pid}")
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
    call = f"clone({flag_names(flags, CloneFlag, 'CLONE_')}|SIGCHLD)"
    api = ctypes.pythonapi
    syscall = libc_gil.syscall
    syscall.restype = ctypes.c_long
    api.PyOS_BeforeFork()
    pid = syscall(
        ctypes.c_long(nr("clone")),
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
        trace(f"{call} = -1 {errno.errorcode.get(err, err)}")
        raise SyscallError(err, call)
    trace(f"{call} = {pid}")
    return int(pid)


#: clone(2)'s ``fn`` argument: ``int (*fn)(void *)``.
_CLONE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


def clone_vm_vfork(fn: Callable[[], int]) -> int:
    """clone(2) with CLONE_VM|CLONE_VFORK, as glibc's posix_spawn does: ``fn`` runs in a
    new process that shares this one's memory, while this one waits (CLONE_VFORK) until
    it has ended. Returns the new process's pid; the caller reaps it (SIGCHLD).

    No copy of the memory is made: that is the point. The zygote uses it to start a
    process inside a container's PID namespace which forks the test process there and
    exits, so that the kernel hands the test process to the container's init, PID 1, as
    its parent (runtime.child.ahead.launch_test_process).

    The unsafe boundary, kept small: ``fn`` runs Python on this process's heap, on a
    stack carved below this one's (:func:`_free_stack_top`), through a ctypes callback,
    which takes the GIL the call below released; this process is stopped meanwhile, so
    no two run at once, and what ``fn`` changes (objects made, fork hooks run) is what a
    call of ``fn`` here would have changed. ``fn`` must return (not ``os._exit``): the
    callback then gives the GIL back, and glibc's clone ends the process with exit(2),
    which leaves the shared memory and files as they are. Exceptions stay inside ``fn``.
    A process made this way has its own fd table, fs and signal handlers (no CLONE_FILES,
    CLONE_FS, CLONE_SIGHAND), so it may setns(2) (user_namespaces(7): not for a process
    that shares its fs) without touching ours.
    """

    def entry(_: int | None) -> int:
        try:
            return fn()
        except BaseException:  # nothing may unwind through the C frames of clone
            return 127

    callback = _CLONE_FN(entry)
    flags = CloneFlag.VM | CloneFlag.VFORK
    call = f"clone({flag_names(flags, CloneFlag, 'CLONE_')}|SIGCHLD)"
    _flush_std_streams()
    pid = libc.clone(
        callback, ctypes.c_void_p(_free_stack_top()), ctypes.c_int(int(flags) | SIGCHLD), None
    )
    return check(pid, call)


def _free_stack_top() -> int:
    """The top of a stack for :func:`clone_vm_vfork`'s process: inside this process's own
    stack, a quarter of its limit below where it began (``startstack``, proc_pid_stat(5)).

    Not a separate mapping: a process forked there keeps running on it (the test
    process), and the interpreter's stack checks (Python 3.14+ measures the stack
    pointer against the main thread's stack) must find it inside the main thread's
    stack. So the caller must be the main thread, and its own frames must fit in that
    quarter: the zygote (one thread) calls from a shallow loop. The kernel grows the
    stack mapping down to it on the first touch.
    """
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start = int(fields[25])  # startstack, field 28 (fields[0] is field 3)
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    room = soft if 0 < soft < 1 << 32 else 8 << 20
    return (start - room // 4) & ~0xF


#: pid_namespaces(7): the last pid allocated in the *writer's* PID namespace; the next
#: fork there gets the first free pid above it. Writable with CAP_SYS_ADMIN (or
#: CAP_CHECKPOINT_RESTORE) in the user namespace that owns that PID namespace.
NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"


def write_ns_last_pid(fd: int, last: int) -> None:
    """Set ns_last_pid of the caller's PID namespace through ``fd``, :data:`NS_LAST_PID`
    opened for writing (the kernel reads the namespace from the writer, not the file)."""
    call = f"write({NS_LAST_PID}, {str(last)!r})"
    try:
        os.pwrite(fd, str(last).encode(), 0)
    except OSError as exc:
        trace(f"{call} = -1 {errno.errorcode.get(exc.errno or 0, '?')}")
        raise SyscallError(exc.errno or errno.EIO, call) from None
    trace(call)


def unshare(flags: CloneFlag) -> None:
    """unshare(2): move the caller into new namespaces."""
    check(
        libc.unshare(ctypes.c_int(int(flags))),
        f"unshare({flag_names(flags, CloneFlag, 'CLONE_')})",
    )


def setns(fd: int, nstype: CloneFlag, label: str) -> None:
    """setns(2): move the caller into the namespace ``fd`` refers to (``os.setns`` is
    Python 3.12+). ``label`` names the namespace in the trace and in errors."""
    check(
        libc.setns(ctypes.c_int(fd), ctypes.c_int(int(nstype))),
        f"setns({label}, {flag_names(nstype, CloneFlag, 'CLONE_')})",
    )


def prctl(option: int, arg2: int = 0, name: str | None = None) -> int:
    """prctl(2) with one argument (the options used here take one)."""
    label = name or str(option)
    return check(
        libc.prctl(
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
        res = libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0)
        if res == -1 and ctypes.get_errno() != errno.EINVAL:  # EINVAL: cap unknown to kernel
            check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")
    trace(f"prctl(PR_CAPBSET_DROP, 0..{last_cap})")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "PR_CAP_AMBIENT_CLEAR_ALL")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    check(
        libc.capset(ctypes.byref(header), ctypes.byref(data)),
        "capset(effective=0, permitted=0, inheritable=0)",
    )


#: A thread's name holds 16 bytes, its NUL included (prctl(2), PR_SET_NAME).
TASK_COMM_LEN = 16


def set_name(name: bytes) -> None:
    """prctl(PR_SET_NAME): the name ps, top and /proc/<pid>/comm show for this (single-
    threaded) process; cut to 15 bytes, as the kernel does."""
    buffer = ctypes.create_string_buffer(name[: TASK_COMM_LEN - 1], TASK_COMM_LEN)
    check(libc.prctl(ctypes.c_int(PR_SET_NAME), buffer, 0, 0, 0), f"prctl(PR_SET_NAME, {name!r})")


def get_name() -> bytes:
    """prctl(PR_GET_NAME): this thread's name."""
    buffer = ctypes.create_string_buffer(TASK_COMM_LEN)
    check(libc.prctl(ctypes.c_int(PR_GET_NAME), buffer, 0, 0, 0), "prctl(PR_GET_NAME)")
    return buffer.value


# --- seccomp -----------------------------------------------------------------------------

# seccomp(2): the program is assembled in .seccomp (include/uapi/linux/seccomp.h).
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def _sock_fprog(code: list[tuple[int, int, int, int]]) -> _SockFprog:
    """The kernel's struct sock_fprog for ``code`` (it keeps its array alive)."""
    return _SockFprog(len(code), (_SockFilter * len(code))(*(_SockFilter(*i) for i in code)))


#: Assembled once, at import in pytest: a test process, a copy, only installs it.
_TEST_PROCESS_PROG = _sock_fprog(seccomp.TEST_PROCESS_FILTER)


def seccomp_filter_test_process() -> None:
    """Install :data:`.seccomp.TEST_PROCESS_FILTER` (seccomp(2), SECCOMP_MODE_FILTER, after
    PR_SET_NO_NEW_PRIVS); what it refuses and why is in :mod:`.seccomp`. ``setsid()``
    alone does not stop TIOCSTI: a session leader can make an inherited tty that is
    nobody's controlling terminal its own (TIOCSCTTY) and type into it (CVE-2017-5226 in
    bubblewrap)."""
    _set_mode_filter(_TEST_PROCESS_PROG, seccomp.DESCRIPTION)


def seccomp_set_mode_filter(code: list[tuple[int, int, int, int]], label: str) -> None:
    """Install any classic BPF program ``code`` (prctl(PR_SET_SECCOMP,
    SECCOMP_MODE_FILTER)); ``label`` says what it does, for the trace and errors. The
    caller sets PR_SET_NO_NEW_PRIVS first unless it has CAP_SYS_ADMIN."""
    _set_mode_filter(_sock_fprog(code), label)


def _set_mode_filter(prog: _SockFprog, label: str) -> None:
    check(
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0),
        f"prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, [{label}])",
    )


KEYCTL_JOIN_SESSION_KEYRING = 1  # include/uapi/linux/keyctl.h


def keyctl_join_session_keyring() -> bool:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): join a new anonymous session keyring.

    False, rather than an error, where keyrings are out of this process's reach anyway:
    a kernel without them (ENOSYS), or a seccomp filter that refuses keyctl (EPERM; the
    filter of :mod:`.seccomp` does, so a container made inside a test finds it so), which
    every process it starts inherits."""
    call = "keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)"
    res = libc.syscall(ctypes.c_long(nr("keyctl")), ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), None)
    if res == -1:
        err = ctypes.get_errno()
        if err == errno.ENOSYS or (err == errno.EPERM and procfs.status_field("Seccomp") == "2"):
            trace(f"{call} = -1 {errno.errorcode[err]} (keyrings are out of reach here)")
            return False
    check(res, call)
    return True


def close_range(first: int, last: int = 0xFFFFFFFF) -> None:
    """close_range(2): close fds first..last (used to close every inherited fd)."""
    res = libc.syscall(
        ctypes.c_long(nr("close_range")),
        ctypes.c_uint(first),
        ctypes.c_uint(last),
        ctypes.c_uint(0),
    )
    check(res, f"close_range({first}, {'~0' if last == 0xFFFFFFFF else last})")


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
            trace(f"write({path}, {line!r}) = -1 {errno.errorcode.get(exc.errno or 0, '?')}")
            raise SyscallError(exc.errno or errno.EIO, f"write({path}, {line!r})") from None
        trace(f"write({path}, {line!r})")


# --- UTS and network ------------------------------------------------------------------------


def sethostname(name: str) -> None:
    """sethostname(2)."""
    raw = name.encode()
    check(libc.sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname({name!r})")


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
            trace(f"ioctl(SIOCSIFFLAGS, 'lo', IFF_UP) = -1 {err}")
            raise SyscallError(
                exc.errno or errno.EIO, "ioctl(SIOCSIFFLAGS, 'lo', IFF_UP)"
            ) from None
    trace("ioctl(SIOCSIFFLAGS, 'lo', IFF_UP)")
