"""What a hostile test reaches for: raw system calls through ctypes, and the attacks of
``test_acceptance.py`` made with them.

Not a test module of this suite: ``test_acceptance.py`` copies this file (with
``tests/procscan.py``) into each inner pytest project, as ``attacks.py``, and the inner
tests call the attacks, inside the container. Each attack asserts that it failed; the
inner project has it rewritten by pytest, for the same messages as in a test module.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import procscan  # copied beside this module

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.unshare.argtypes = (ctypes.c_int,)
libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_char_p)
libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
libc.ptrace.restype = ctypes.c_long
libc.syscall.restype = ctypes.c_long

MS_REMOUNT, MS_BIND, MS_REC, MS_SHARED = 0x20, 0x1000, 0x4000, 0x100000
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x20000, 0x10000000, 0x20000000
SYS_PIDFD_OPEN, SYS_MOUNT_SETATTR = 434, 442  # asm-generic: x86_64 and aarch64 alike
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
TIOCSTI, TIOCSCTTY = 0x5412, 0x540E

#: What an attack made of a few attempts gives: per attempt, "ok" or an errno's name.
Results = dict[str, str]


# --- the toolbox ----------------------------------------------------------------------------


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def _errno_name(number: int) -> str:
    return errno.errorcode.get(number, str(number))


def _call(fn: Callable[..., int], *args: object) -> str:
    ctypes.set_errno(0)
    return "ok" if fn(*args) != -1 else _errno_name(ctypes.get_errno())


def attempt(fn: Callable[..., object], *args: object, **kwargs: object) -> str:
    """ "ok", or the name of the errno it failed with."""
    try:
        fn(*args, **kwargs)
    except OSError as exc:
        return _errno_name(exc.errno or 0)
    return "ok"


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> str:
    return _call(libc.mount, _b(source), _b(target), _b(fstype), flags, _b(data))


def umount(target: str) -> str:
    return _call(libc.umount2, _b(target), MNT_DETACH)


def unshare(flags: int) -> str:
    return _call(libc.unshare, flags)


class _MountAttr(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("set", "clr", "propagation", "userns_fd")]


def clear_read_only_recursively(path: str) -> str:
    attr = _MountAttr(0, MOUNT_ATTR_RDONLY, 0, 0)
    return _call(
        libc.syscall,
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        _b(path),
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )


def make_writable(path: str) -> Results:
    """Every way there is to make a read-only mount writable again."""
    return {
        "mount -o remount,bind,rw": mount(None, path, None, MS_REMOUNT | MS_BIND),
        "mount -o remount,rw": mount(None, path, None, MS_REMOUNT),
        "mount_setattr(AT_RECURSIVE, attr_clr=RDONLY)": clear_read_only_recursively(path),
    }


def ioctl(fd: int, request: int, arg: bytes | None = None) -> str:
    return _call(libc.ioctl, fd, request, arg)


def ptrace(request: int, pid: int) -> str:
    return _call(libc.ptrace, request, pid, None, None)


def pidfd_open(pid: int) -> str:
    ctypes.set_errno(0)
    fd = libc.syscall(ctypes.c_long(SYS_PIDFD_OPEN), ctypes.c_int(pid), ctypes.c_uint(0))
    if fd < 0:
        return _errno_name(ctypes.get_errno())
    os.close(fd)
    return "ok"


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter_user_and_mount_namespace(flags: int = CLONE_NEWUSER | CLONE_NEWNS) -> Results:
    """``unshare -Urm`` by hand. A new user namespace comes with every capability in
    it; writing the id maps may be refused (a host root without CAP_SETFCAP may not map
    uid 0), the capabilities come anyway."""
    steps = {"unshare": unshare(flags)}
    steps["setgroups"] = attempt(_write, "/proc/self/setgroups", "deny")
    steps["uid_map"] = attempt(_write, "/proc/self/uid_map", f"0 {os.getuid()} 1")
    steps["gid_map"] = attempt(_write, "/proc/self/gid_map", f"0 {os.getgid()} 1")
    return steps


def in_child(fn: Callable[..., object], *args: object) -> Any:
    """fn(*args) in a forked child (new namespaces stay with it); its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(r)
            os.write(w, json.dumps(fn(*args)).encode())
            status = 0
        except BaseException as exc:
            try:
                os.write(w, json.dumps({"error in child": repr(exc)}).encode())
            except BaseException:
                pass
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _reached_mount(path: str) -> str | None:
    """The id of the mount that ``path`` leads to now, if any."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            return next(line.split()[1] for line in f if line.startswith("mnt_id:"))
    finally:
        os.close(fd)


def mountinfo(reachable_only: bool = False) -> list[tuple[str, list[str], str]]:
    """(mount point, per-mount options, fstype) of every mount in this namespace; with
    ``reachable_only``, only those a path leads to (not those covered by a later mount
    on the same place or on a directory above it)."""
    with open("/proc/self/mountinfo") as f:
        lines = [line.split() for line in f]
    mounts = []
    for fields in lines:
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if reachable_only and _reached_mount(point) != fields[0]:
            continue
        mounts.append((point, fields[5].split(","), fields[fields.index("-") + 1]))
    return mounts


def mountinfo_text() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def _read_one_byte(path: str) -> None:
    with open(path, "rb") as f:
        f.read(1)


def _status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


# --- 1. writing a read-only path fails and the host file is unchanged -------------------------


def write_read_only_paths(data: Path, usr_probe: str) -> None:
    precious = data / "precious.txt"
    attacks: dict[str, Callable[[], object]] = {
        "overwrite": lambda: precious.write_text("overwritten"),
        "append": lambda: open(precious, "a").close(),
        "truncate": lambda: os.truncate(precious, 0),
        "chmod": lambda: os.chmod(precious, 0o777),
        "chown": lambda: os.chown(precious, os.getuid(), os.getgid()),
        "utime": lambda: os.utime(precious, (0, 0)),
        "setxattr": lambda: os.setxattr(precious, "user.rootless", b"1"),
        "rename": lambda: os.rename(precious, data / "renamed.txt"),
        "unlink": lambda: os.unlink(precious),
        "hard link": lambda: os.link(precious, data / "link.txt"),
        "symlink": lambda: os.symlink(precious, data / "symlink.txt"),
        "create": lambda: (data / "new.txt").write_text("new"),
        "mkdir": lambda: os.mkdir(data / "new"),
        "create in /usr": lambda: open(usr_probe, "w").close(),
    }
    results = {name: attempt(attack) for name, attack in attacks.items()}
    print(results)
    assert results == dict.fromkeys(attacks, "EROFS")
    assert precious.read_text() == "original"


# --- 2. `mount -o remount,rw` fails, also from a nested `unshare -Urm`, also root=True -------


def _remount_then_write(target: str, probe: str) -> dict[str, object]:
    return {
        **make_writable(target),
        "still read-only": bool(os.statvfs(target).f_flag & os.ST_RDONLY),
        "write after": attempt(lambda: open(os.path.join(target, probe), "w").close()),
    }


def _from_nested_namespace(target: str, probe: str) -> dict[str, object]:
    return {"nested": enter_user_and_mount_namespace(), **_remount_then_write(target, probe)}


def _remount_refused(results: dict[str, Any]) -> bool:
    return bool(results["still read-only"]) and "ok" not in [
        v for k, v in results.items() if k not in ("nested", "still read-only")
    ]


def remount_read_write(target: str, probe: str) -> None:
    here = _remount_then_write(target, probe)
    nested = in_child(_from_nested_namespace, target, probe)
    print(here, nested, sep="\n")
    assert _remount_refused(here), here
    assert nested["nested"]["unshare"] == "ok", nested  # the attack did get its namespace
    assert _remount_refused(nested), nested


def unshare_urm_mount_remount_rw(target: str, probe: str) -> None:
    script = (
        f"mount -o remount,bind,rw {target}; mount -o remount,rw {target}; "
        f"touch {os.path.join(target, probe)}"
    )
    done = subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True)
    assert done.returncode != 0, done
    assert not os.path.exists(os.path.join(target, probe))


# --- 3. submounts of read-only binds are read-only -------------------------------------------

DEVICES = ["/dev/" + name for name in ("null", "zero", "full", "random", "urandom", "tty")]
FRESH = ["/proc", "/tmp", "/var/tmp", "/dev/shm", "/dev/pts", *DEVICES]  # and HOME


def submounts(expected: list[str], probe: str) -> None:
    reachable = mountinfo(reachable_only=True)
    writable = [point for point, options, _ in reachable if "rw" in options]
    assert [p for p in writable if p not in (*FRESH, os.environ["HOME"])] == []
    points = {point for point, _, _ in mountinfo()}
    assert set(expected) <= points  # the submounts are there, read-only
    results = {
        submount: {
            **make_writable(submount),
            "mkdir": attempt(os.mkdir, os.path.join(submount, probe)),
        }
        for submount in expected
    }
    print(results)
    assert all(r["mkdir"] == "EROFS" and "ok" not in r.values() for r in results.values()), results


# --- 4. CapEff, CapPrm, CapBnd are 0 and NoNewPrivs is 1 (root=False); what root=True gives --


def capabilities(root: bool, host_uid: int, host_gid: int) -> None:
    fields = _status()
    caps = {k: int(fields[k], 16) for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")}
    with open("/proc/sys/kernel/cap_last_cap") as f:
        every = (1 << (int(f.read()) + 1)) - 1
    with open("/proc/self/uid_map") as f:
        uid_map = f.read().split()
    print(caps, fields["NoNewPrivs"], uid_map)
    assert fields["NoNewPrivs"].strip() == "1"
    # A device node would be a way out; CAP_MKNOD counts in the host's namespace only.
    node = ("/tmp/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert attempt(os.mknod, *node) == "EPERM"
    if root:
        # uid 0 and every capability, over the container's own namespaces only
        assert (os.getuid(), os.getgid()) == (0, 0)
        assert caps == {"CapEff": every, "CapPrm": every, "CapBnd": every, "CapInh": 0, "CapAmb": 0}
        assert uid_map == ["0", str(host_uid), "1"]
        socket.sethostname("root-in-here")  # its own UTS namespace
        assert socket.gethostname() == "root-in-here"
    else:
        assert (os.getuid(), os.getgid()) == (host_uid, host_gid)
        assert caps == dict.fromkeys(caps, 0)
        assert uid_map == [str(host_uid), str(host_uid), "1"]
        assert attempt(socket.sethostname, "not-root") == "EPERM"


# --- 5. TIOCSTI and the high-bit variant (1<<32)|TIOCSTI fail --------------------------------

HIGH_BIT = (1 << 32) | TIOCSTI  # a seccomp filter comparing 64 bits misses it (CVE-2019-10063)


def _inject(fd: int) -> Results:
    return {"TIOCSTI": ioctl(fd, TIOCSTI, b"X"), "(1<<32)|TIOCSTI": ioctl(fd, HIGH_BIT, b"Y")}


def inject_keystrokes() -> None:
    results: dict[str, object] = {"open /dev/tty": attempt(os.open, "/dev/tty", os.O_RDWR)}
    ttys = [int(fd) for fd in os.listdir("/proc/self/fd") if os.isatty(int(fd))]
    for fd in ttys:
        results[f"fd {fd}"] = _inject(fd)
        # Then as its controlling terminal: after setsid() the test is a session leader
        results[f"fd {fd}: TIOCSCTTY"] = ioctl(fd, TIOCSCTTY, None)
        results[f"fd {fd} as controlling terminal"] = _inject(fd)
    print(results)
    assert results["open /dev/tty"] == "ENXIO"  # no controlling terminal
    injected = [k for k, v in results.items() if isinstance(v, dict) and "ok" in v.values()]
    assert injected == [], results


# --- 6. a host TCP listener on 127.0.0.1, a host abstract unix socket and a host unix socket
#        file are unreachable --------------------------------------------------------------


def connect_to_the_host(family: int, address: str | bytes | tuple[str, int]) -> None:
    if isinstance(address, str):  # a socket file: not even there
        assert not os.path.lexists(address)
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        outcome = attempt(client.connect, address)
    assert outcome in ("ECONNREFUSED", "ENOENT"), outcome


# --- 7. a host process of the same uid can be neither seen, signalled nor ptraced ------------


def reach_the_host_process(pid: int, token: str) -> None:
    seen = {
        "/proc/PID": os.path.exists(f"/proc/{pid}"),
        "by its command line": procscan.tagged(token),
    }
    print(seen)
    assert seen == {"/proc/PID": False, "by its command line": {}}
    reached = {
        "kill(pid, 0)": attempt(os.kill, pid, 0),
        "kill(pid, SIGSTOP)": attempt(os.kill, pid, signal.SIGSTOP),
        "kill(pid, SIGKILL)": attempt(os.kill, pid, signal.SIGKILL),
        "killpg(pid, SIGKILL)": attempt(os.killpg, pid, signal.SIGKILL),
        "ptrace(PTRACE_ATTACH)": ptrace(PTRACE_ATTACH, pid),
        "ptrace(PTRACE_SEIZE)": ptrace(PTRACE_SEIZE, pid),
        "pidfd_open": pidfd_open(pid),
    }
    print(reached)
    assert reached == dict.fromkeys(reached, "ESRCH")


# --- 8. /proc lists only the container's processes -------------------------------------------


def look_at_proc(host_pytest_pid: int) -> None:
    assert procscan.pids() == [1, 2]
    assert not os.path.exists(f"/proc/{host_pytest_pid}")
    # a proc of its own making shows the same namespace, or cannot be made
    os.mkdir("/tmp/proc")
    made = mount("proc", "/tmp/proc", "proc")
    assert made in ("ok", "EPERM")
    if made == "ok":
        assert procscan.pids("/tmp/proc") == [1, 2]


# --- 9. /proc/sys writes fail ----------------------------------------------------------------

# Global settings (core_pattern runs a program as host root on a crash: the classic escape),
# opened for writing only: nothing is ever written, even if the open succeeds.
SYSCTLS = ("sys/kernel/core_pattern", "sys/fs/lease-break-time", "sysrq-trigger")
#: The steps of entering a namespace, which may succeed (they are not the attack).
STEPS = ("unshare", "setgroups", "uid_map", "gid_map")


def _open_for_writing(path: str) -> str:
    def attack() -> None:
        os.close(os.open(path, os.O_WRONLY))

    return attempt(attack)


def _through_every_proc() -> Results:
    procs = [point for point, _, fstype in mountinfo() if fstype == "proc"]
    procs.append("/dev/.rootless-proc/proc")  # a hidden one, if it can be reached
    return {
        f"{proc}/{target}": _open_for_writing(f"{proc}/{target}")
        for proc in procs
        for target in SYSCTLS
    }


def _undo_the_covers() -> Results:
    return {
        **{f"{k} /proc/sys": v for k, v in make_writable("/proc/sys").items()},
        "umount /proc/sys": umount("/proc/sys"),
        **{f"then /proc/{t}": _open_for_writing(f"/proc/{t}") for t in SYSCTLS},
    }


def _in_a_fresh_proc() -> Results:
    os.makedirs("/tmp/fresh-proc", exist_ok=True)
    steps = enter_user_and_mount_namespace(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)

    def pid1() -> Results:  # a fresh proc is for a process inside the new PID namespace
        made = mount("proc", "/tmp/fresh-proc", "proc")
        if made != "ok":
            return {"mount proc": made}
        return {f"fresh /proc/{t}": _open_for_writing(f"/tmp/fresh-proc/{t}") for t in SYSCTLS}

    return {**steps, **in_child(pid1)}


def _sysctl_refused(results: Results) -> bool:
    return [k for k, v in results.items() if v == "ok" and not k.endswith(STEPS)] == []


def write_proc_sys() -> None:
    here = _through_every_proc()
    assert _sysctl_refused(here), here
    nested = in_child(lambda: {**enter_user_and_mount_namespace(), **_undo_the_covers()})
    assert _sysctl_refused(nested), nested
    fresh = in_child(_in_a_fresh_proc)
    assert _sysctl_refused(fresh), fresh
    own = _undo_the_covers()
    print(here, nested, fresh, own, sep="\n")
    assert _sysctl_refused(own), own


# --- 10. an fd inherited by pytest is closed inside ------------------------------------------


def use_inherited_fds(fds: tuple[int, ...], secret: str) -> None:
    for fd in fds:
        assert attempt(os.fstat, fd) == "EBADF"
        assert attempt(os.write, fd, b"written from inside") == "EBADF"
    for fd_name in os.listdir("/proc/self/fd"):
        target = attempt(os.readlink, f"/proc/self/fd/{fd_name}")
        assert secret not in target


# --- 11. /proc/1/fd is unreadable ------------------------------------------------------------


def reach_into_init() -> None:
    results = {
        "readlink /proc/1/exe": attempt(os.readlink, "/proc/1/exe"),
        "open /proc/1/exe": attempt(_read_one_byte, "/proc/1/exe"),
        "read /proc/1/environ": attempt(_read_one_byte, "/proc/1/environ"),
        "read /proc/1/mem": attempt(_read_one_byte, "/proc/1/mem"),
        "list /proc/1/root": attempt(os.listdir, "/proc/1/root"),
        "list /proc/1/cwd": attempt(os.listdir, "/proc/1/cwd"),
    }
    # init holds one fd (its channel to the host): no link of /proc/1/fd may be followed
    for fd in range(64):
        path = f"/proc/1/fd/{fd}"
        attacks: tuple[tuple[str, Callable[[str], object]], ...] = (
            ("readlink", os.readlink),
            ("open", _read_one_byte),
        )
        for how, attack in attacks:
            outcome = attempt(attack, path)
            if outcome != "ENOENT":
                results[f"{how} {path}"] = outcome
    if os.getuid() != 0:  # the directory itself is root's: uid 0 may list fd numbers
        results["list /proc/1/fd"] = attempt(os.listdir, "/proc/1/fd")
    print(results)
    assert results == dict.fromkeys(results, "EACCES")


# --- 12. $HOME files of the host and the host's /tmp are invisible ---------------------------


def look_for_host_files(host_home: str, host_tmp_marker: str, written: str) -> None:
    home = os.environ["HOME"]
    assert os.listdir(home) == []
    for path in (
        os.path.join(host_home, ".ssh", "id_ed25519"),
        os.path.join(host_home, ".bashrc"),
        host_tmp_marker,
        os.path.dirname(host_tmp_marker),
    ):
        assert not os.path.lexists(path), path
    for directory in (home, "/tmp"):  # what the test writes stays in here
        with open(os.path.join(directory, written), "w") as f:
            f.write("from inside")


# --- 14. background and double-forked daemons do not outlive the test -----------------------


def start_daemons(token: str, gone_within: float) -> None:
    keep = f"sleep 300; : {token}"
    subprocess.Popen(["sh", "-c", keep])  # in the background
    subprocess.Popen(  # double-forked, its own session, stdio detached
        ["sh", "-c", f"setsid sh -c '{keep}' </dev/null >/dev/null 2>&1 &"]
    )
    subprocess.Popen(  # nohup'ed, SIGHUP and SIGTERM ignored
        ["sh", "-c", f"trap '' HUP TERM; nohup sh -c '{keep}' >/dev/null 2>&1 &"]
    )
    subprocess.Popen(  # in a PID namespace of its own, below the container's
        ["unshare", "-Upf", "sh", "-c", keep], stderr=subprocess.DEVNULL
    )

    # The five that stay: the background shell, the setsid and nohup ones once they
    # have exec'd it, unshare and its child. The wrappers that start the second and
    # third carry the token for a moment too: they are not counted (so the count
    # never falls once it is reached; unshare's child counts before its exec too).
    def settled(running: dict[int, list[str]]) -> list[int]:
        wrappers = ("setsid", "nohup")
        return [
            pid
            for pid, argv in running.items()
            if not any(w in arg for arg in argv for w in wrappers)
        ]

    # one reading decides: two can differ (a process in the middle of an exec)
    running = procscan.settle(
        lambda: procscan.tagged(token), lambda running: len(settled(running)) >= 5, gone_within
    )
    assert len(settled(running)) >= 5, running


def none_left(token: str, gone_within: float) -> None:
    assert procscan.gone(token, gone_within) == {}


# --- 15. SIGKILL to pytest itself leaves no container process behind ------------------------


def wait_to_be_killed(token: str) -> None:
    keep = f"sleep 300; : {token}"
    subprocess.Popen(["sh", "-c", keep])
    subprocess.Popen(["sh", "-c", f"setsid sh -c '{keep}' </dev/null >/dev/null 2>&1 &"])
    time.sleep(300)


# --- 16. no mount leaks out of the container or into it -------------------------------------


def _make_mounts(target: str) -> Results:
    os.makedirs("/tmp/mnt", exist_ok=True)
    return {
        "make / shared": mount(None, "/", None, MS_REC | MS_SHARED),
        "tmpfs on the project": mount("acceptance", target, "tmpfs"),
        "bind /usr on the project": mount("/usr", target, None, MS_BIND),
        "make /tmp shared": mount(None, "/tmp", None, MS_REC | MS_SHARED),
        "tmpfs in /tmp": mount("acceptance", "/tmp/mnt", "tmpfs"),
    }


def mount_inside(target: str, root: bool) -> None:
    here = _make_mounts(target)
    nested = in_child(lambda: {**enter_user_and_mount_namespace(), **_make_mounts(target)})
    print(here, nested, sep="\n")
    if root:  # root in here may mount, in here
        assert here["tmpfs on the project"] == "ok", here
    assert nested["unshare"] == "ok", nested
    assert nested["tmpfs on the project"] == "ok", nested


def host_mounts_later(here: Path) -> None:
    with open(here / "go") as go:  # the host mounts here/late, then says so
        assert go.read() == "mounted"
    assert not os.path.ismount(here / "late")
    assert os.listdir(here / "late") == []
    assert str(here / "late") not in [point for point, _, _ in mountinfo()]


# --- 17. a hang with `timeout` set is stopped, reported, and the session goes on -------------


def hang(token: str) -> None:
    subprocess.Popen(["sh", "-c", f"sleep 300; : {token}"])
    time.sleep(300)


# --- 18. the host's keyrings: not listed, not linked, read, added to or deleted from --------

_MACHINE = os.uname().machine
SYS_ADD_KEY, SYS_REQUEST_KEY, SYS_KEYCTL = {"x86_64": (248, 249, 250), "aarch64": (217, 218, 219)}[
    _MACHINE
]
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_DESCRIBE, KEYCTL_LINK, KEYCTL_UNLINK = 1, 6, 8, 9
KEYCTL_SEARCH, KEYCTL_READ, KEYCTL_INVALIDATE = 10, 11, 21
KEY_SPEC_SESSION_KEYRING = -3


def _key_call(number: int, *args: int | bytes | None) -> int:
    ctypes.set_errno(0)
    values = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return int(libc.syscall(ctypes.c_long(number), *values))


def keyctl(operation: int, *args: int | bytes | None) -> str:
    result = _key_call(SYS_KEYCTL, operation, *args)
    return "ok" if result >= 0 else _errno_name(ctypes.get_errno())


def _read_key(key: int) -> str:
    buffer = ctypes.create_string_buffer(4096)
    size = _key_call(SYS_KEYCTL, KEYCTL_READ, key, ctypes.addressof(buffer), len(buffer))
    if size < 0:
        return _errno_name(ctypes.get_errno())
    return "ok: " + buffer.raw[: min(size, len(buffer))].decode(errors="replace")


def _add_key(description: str, keyring: int) -> str:
    data = b"planted"
    result = _key_call(SYS_ADD_KEY, b"user", description.encode(), data, len(data), keyring)
    return "ok" if result >= 0 else _errno_name(ctypes.get_errno())


def _request_key(description: str) -> str:
    result = _key_call(SYS_REQUEST_KEY, b"user", description.encode(), None, 0)
    return "ok" if result >= 0 else _errno_name(ctypes.get_errno())


def _text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        return _errno_name(exc.errno or 0)


def reach_the_host_keyrings(user_keyring: int, secret: int, victim: int, token: str) -> None:
    """The hostile review's steps, with the serials of the host's keys given (a test could
    read them in /proc/keys): link the host's user keyring into the session keyring (its
    keys are then possessed), read one, add one, delete one."""
    listed = {f"/proc/{name}": _text(f"/proc/{name}") for name in ("keys", "key-users")}
    print(listed)
    buffer = ctypes.create_string_buffer(4096)
    results = {
        "link the user keyring": keyctl(KEYCTL_LINK, user_keyring, KEY_SPEC_SESSION_KEYRING),
        "search it": keyctl(
            KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, b"user", f"{token}-secret".encode(), 0
        ),
        "describe a host key": keyctl(KEYCTL_DESCRIBE, secret, ctypes.addressof(buffer), 4096),
        "read a host key": _read_key(secret),
        "add a key to the host's user keyring": _add_key(f"{token}-planted", user_keyring),
        "add a key to the session keyring": _add_key(f"{token}-own", KEY_SPEC_SESSION_KEYRING),
        "request_key": _request_key(f"{token}-secret"),
        "unlink a host key": keyctl(KEYCTL_UNLINK, victim, user_keyring),
        "invalidate a host key": keyctl(KEYCTL_INVALIDATE, victim),
        "join another session keyring": keyctl(KEYCTL_JOIN_SESSION_KEYRING, None),
    }
    print(results)
    # the host's keyrings are not even listed, and every keyring call is refused
    assert {**listed, **results} == {**dict.fromkeys(listed, ""), **dict.fromkeys(results, "EPERM")}


# --- 19. the cgroup tree is out of reach, and a limit holds, also with root=True -------------

CLONE_NEWCGROUP = 0x02000000
SYS_CLONE, SYS_CLONE3 = {"x86_64": 56, "aarch64": 220}[_MACHINE], 435


def _clone(flags: int) -> str:
    """clone(2) with ``flags`` (all 64 bits of them) and fork semantics; the child leaves at
    once."""
    ctypes.set_errno(0)
    pid = libc.syscall(
        ctypes.c_long(SYS_CLONE), ctypes.c_ulong(flags | signal.SIGCHLD), None, None, None, None
    )
    if pid == 0:
        os._exit(0)
    if pid < 0:
        return _errno_name(ctypes.get_errno())
    os.waitpid(pid, 0)
    return "ok"


def _clone3(flags: int) -> str:
    # struct clone_args, CLONE_ARGS_SIZE_VER0: flags, pidfd, child_tid, parent_tid,
    # exit_signal, stack, stack_size, tls
    args = (ctypes.c_uint64 * 8)(flags, 0, 0, 0, signal.SIGCHLD, 0, 0, 0)
    ctypes.set_errno(0)
    pid = libc.syscall(ctypes.c_long(SYS_CLONE3), ctypes.byref(args), ctypes.c_size_t(64))
    if pid == 0:
        os._exit(0)
    if pid < 0:
        return _errno_name(ctypes.get_errno())
    os.waitpid(pid, 0)
    return "ok"


def _hierarchies() -> list[str]:
    """The controllers of each cgroup v1 hierarchy this process is in, "" for cgroup v2."""
    with open("/proc/self/cgroup") as f:
        return [line.rstrip("\n").split(":")[1] for line in f]


def _mount_the_cgroup_tree(flags: int, token: str) -> Results:
    """In a new cgroup namespace: mount every hierarchy, make a cgroup in each, lift the
    limits of the container's own cgroups (the root of this namespace)."""
    steps = {"unshare": unshare(flags)}
    if steps["unshare"] != "ok":
        return steps
    if flags & CLONE_NEWUSER:
        steps["uid_map"] = attempt(_write, "/proc/self/uid_map", f"0 {os.getuid()} 1")
    for controllers in _hierarchies():
        name = controllers.replace("name=", "") or "unified"
        target = f"/tmp/cgroup-{name}"
        os.makedirs(target, exist_ok=True)
        if controllers:
            made = mount("cgroup", target, "cgroup", 0, controllers)
        else:
            made = mount("cgroup2", target, "cgroup2")
        steps[f"mount {name}"] = made
        if made != "ok":
            continue
        steps[f"mkdir {name}/{token}"] = attempt(os.mkdir, f"{target}/{token}")
        with contextlib.suppress(OSError):
            os.rmdir(f"{target}/{token}")
        for knob, value in (("pids.max", "max"), ("memory.max", "max")):
            if os.path.exists(f"{target}/{knob}"):
                steps[f"write {name}/{knob}"] = attempt(_write, f"{target}/{knob}", value)
        if os.path.exists(f"{target}/memory.limit_in_bytes"):
            steps[f"write {name}/memory.limit_in_bytes"] = attempt(
                _write, f"{target}/memory.limit_in_bytes", str(1 << 40)
            )
    return steps


def _fork_bomb(count: int) -> int:
    """How many sleeping children could be started, up to ``count`` (all killed after)."""
    children = []
    try:
        for _ in range(count):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
        return len(children)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _allocate(size: int) -> str:
    """Whether a child could allocate ``size`` bytes (zero-filled: every page touched)."""
    pid = os.fork()
    if pid == 0:
        try:
            block = bytearray(size)
            os._exit(0 if len(block) == size else 1)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return "allocated" if os.waitstatus_to_exitcode(status) == 0 else "refused"


def reach_the_cgroup_tree(root: bool, token: str, pids: int, memory: int) -> None:
    own = 0 if root else CLONE_NEWUSER  # root=True may make a cgroup namespace straight away
    results = {
        "unshare(CLONE_NEWCGROUP)": in_child(unshare, own | CLONE_NEWCGROUP),
        "clone(CLONE_NEWCGROUP)": _clone(own | CLONE_NEWCGROUP),
        "clone((1 << 32) | CLONE_NEWCGROUP)": _clone((1 << 32) | own | CLONE_NEWCGROUP),
        "clone3(CLONE_NEWCGROUP)": _clone3(own | CLONE_NEWCGROUP),
    }
    mounted = in_child(_mount_the_cgroup_tree, own | CLONE_NEWCGROUP | CLONE_NEWNS, token)
    print(results, mounted)
    assert results == {
        "unshare(CLONE_NEWCGROUP)": "EPERM",
        "clone(CLONE_NEWCGROUP)": "EPERM",
        "clone((1 << 32) | CLONE_NEWCGROUP)": "EPERM",
        "clone3(CLONE_NEWCGROUP)": "ENOSYS",  # glibc falls back to clone(2), seen above
    }
    assert mounted == {"unshare": "EPERM"}
    # whatever was tried, the limits hold
    started = _fork_bomb(2 * pids)
    allocated = _allocate(2 * memory)
    print(started, allocated)
    assert started < pids
    assert allocated == "refused"


# --- 20. on a private network, what a root=True member can and cannot do ---------------------


def serve_as(name: str, port: int) -> None:
    """Answer every connection on ``port`` with ``name``, until the container ends."""
    server = socket.create_server(("0.0.0.0", port))
    while True:
        conn, _ = server.accept()
        with conn:
            conn.sendall(name.encode())


def ask(address: str, port: int) -> str:
    """Who answers at ``address``: its name, or the error."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((address, port), timeout=5) as conn:
                return conn.recv(100).decode()
        except ConnectionRefusedError:  # not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        except OSError as exc:
            return _errno_name(exc.errno or 0)


def take_address(address: str) -> str:
    """Add ``address`` (another member's) to this member's eth0."""
    import ipaddress

    from pytest_rootless.kernel.netlink import Netlink

    with Netlink() as nl:
        return attempt(nl.add_address, "eth0", ipaddress.ip_interface(address))


def links() -> list[str]:
    from pytest_rootless.kernel.netlink import Netlink

    with Netlink() as nl:
        return sorted(nl.links())


def addresses() -> list[tuple[str, str]]:
    from pytest_rootless.kernel.netlink import Netlink

    with Netlink() as nl:
        return sorted(nl.addresses())


def pull_a_cable(name: str) -> str:
    """Set link ``name`` down (a bridge port is ``vethN`` in the network's namespace)."""
    from pytest_rootless.kernel.netlink import Netlink

    if name not in links():
        return "no such link here"
    with Netlink() as nl:
        return attempt(nl.set_up, name, False)


# --- 21 to 23. frames a test forges on its own result channel --------------------------------


def result_channel() -> int:
    """The test process's result channel: the only pipe above stdio open for writing."""
    import fcntl

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
            if fd > 2 and writable and stat.S_ISFIFO(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass
    raise AssertionError("no result channel in this test process")


def send_frame(message: dict[str, Any]) -> None:
    """One frame (a big-endian length, then JSON) on the result channel, as the
    machinery of the test process sends its own."""
    body = json.dumps(message).encode()
    data = memoryview(len(body).to_bytes(4, "big") + body)
    fd = result_channel()
    while data:
        data = data[os.write(fd, data) :]


# --- 25. a forged "done" frame does not keep the container alive -----------------------------


def outlive_the_test(token: str) -> None:
    """Say "done" early, then keep writing to the host's capture from a child."""
    send_frame({"kind": "done", "status": 0})
    subprocess.Popen(["sh", "-c", f"sleep 0.5; while :; do echo {token}; sleep 0.1; done"])
    time.sleep(30)


# --- 24. a result full of hash collisions ------------------------------------------------------

#: Python hashes an int modulo this prime: ints that differ by a multiple share one hash.
HASH_MODULUS = 2**61 - 1


def forge_colliding_set(n: int) -> None:
    """In a call process: send, as its result, a set of ``n`` ints with one hash, encoded
    as the host decodes it (building that set in here would take as long as decoding it
    there), and end."""
    members = [{"$t": "int", "v": format(1 + k * HASH_MODULUS, "x")} for k in range(n)]
    body = json.dumps(
        {"kind": "result", "encoding": 1, "value": {"$t": "set", "v": members}}
    ).encode()
    frame = len(body).to_bytes(4, "big") + body
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                view = memoryview(frame)
                while view:
                    view = view[os.write(int(name), view) :]
        except OSError:
            pass
    os._exit(0)
