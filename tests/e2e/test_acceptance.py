"""The acceptance list of runtime.md ("What it must withstand"), as attacks.

One test per item, named after it, in the list's order (``pytest -k acceptance`` selects
them). Each one writes a hostile test, runs it isolated (``@pytest.mark.isolated``) in a
real inner pytest (``-p rootless``, in a subprocess), and asserts that the attack failed
inside **and** left no trace on the host. Where ``root`` applies, each runs with
``root=False`` and ``root=True``. The attacks use raw system calls through ctypes: that is
test code, and it runs inside the container.

An attack that succeeds is not weakened here: it stays, marked
``xfail(strict=True, reason="ATTACK SUCCEEDS: ...")``, until the runtime is fixed.

Other tests that cover parts of the same items (kept; the tests here add ``root=True``,
the attack made from inside an isolated test, or the check of the host afterwards):

- writing a read-only path fails and the host file is unchanged:
  e2e/test_isolation.py::test_write_to_a_read_only_path_fails_and_the_host_is_unchanged
  (root=False), integration/test_container.py::test_read_only_host_cannot_be_made_writable
- ``mount -o remount,rw`` fails, also with root=True (no nested ``unshare -Urm`` there):
  e2e/test_isolation.py::test_read_only_mounts_cannot_be_made_writable
- CapEff, CapPrm, CapBnd are 0 and NoNewPrivs is 1:
  integration/test_container.py::test_identity_and_privileges and
  ::test_root_inside_is_your_uid_outside
- a host TCP listener on 127.0.0.1 is unreachable:
  integration/test_container.py::test_host_listener_is_unreachable
- /proc lists only the container's processes:
  e2e/test_isolation.py::test_proc_shows_only_the_container (root=False)
- /proc/sys writes fail: integration/test_container.py::test_minimal_root_filesystem
  (``os.access`` only)
- an fd inherited by pytest is closed inside:
  integration/test_container.py::test_inherited_fd_is_closed
- /proc/1/fd is unreadable: integration/test_container.py::test_pid1_is_not_dumpable
- the host's /tmp is invisible: e2e/test_isolation.py::test_tmp_inside_is_private
  (root=False)
- exit status 71 and SIGABRT 134, as reported:
  e2e/test_crashes.py::test_crash_in_the_test_body (root=False)
- background and double-forked daemons do not outlive the test:
  integration/test_container.py::test_daemons_do_not_outlive_the_container
- SIGKILL to pytest itself leaves no container process behind:
  integration/test_container.py::test_sigkill_to_the_host_process_leaves_nothing
- a hang with ``timeout`` set is stopped:
  e2e/test_crashes.py::test_timeout_stops_the_test_and_dumps_its_stack (root=False),
  integration/test_container.py::test_timeout_kills_the_whole_container_and_dumps_stacks

Not here: the fork bomb with ``pids``, the memory bomb with ``memory`` and the busy loop
with ``cpu`` (the limits are being built elsewhere, with their own tests).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tty
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from string import Template

import pytest

from pytest_rootless.kernel.paths import is_under
from pytest_rootless.runtime.rootfs import HOST_MASKED_DIRS

TIMEOUT = 120
#: How long a process of a finished container may take to be gone (the kernel reaps a
#: dead PID namespace asynchronously); a bound against hanging, never a measurement.
GONE_WITHIN = 10.0

ROOTS = pytest.mark.parametrize("root", [False, True], ids=["root=False", "root=True"])
AS_ROOT = os.geteuid() == 0
NEEDS_HOST_ROOT = pytest.mark.skipif(
    not AS_ROOT, reason="making a mount on the host side needs root (an unprivileged run cannot)"
)

# --- the hostile test's toolbox (a module of the inner project, imported inside) -----------

ATTACKS = '''
    """What a hostile test reaches for: raw system calls through ctypes."""

    import ctypes
    import errno
    import json
    import os
    import re

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (
        ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p
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


    def _b(text):
        return None if text is None else os.fsencode(text)


    def _errno_name(number):
        return errno.errorcode.get(number, str(number))


    def _call(fn, *args):
        ctypes.set_errno(0)
        return "ok" if fn(*args) != -1 else _errno_name(ctypes.get_errno())


    def attempt(fn, *args, **kwargs):
        """ "ok", or the name of the errno it failed with."""
        try:
            fn(*args, **kwargs)
        except OSError as exc:
            return _errno_name(exc.errno or 0)
        return "ok"


    def mount(source, target, fstype=None, flags=0, data=None):
        return _call(libc.mount, _b(source), _b(target), _b(fstype), flags, _b(data))


    def umount(target):
        return _call(libc.umount2, _b(target), MNT_DETACH)


    def unshare(flags):
        return _call(libc.unshare, flags)


    class _MountAttr(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint64) for n in ("set", "clr", "propagation", "userns_fd")]


    def clear_read_only_recursively(path):
        attr = _MountAttr(0, MOUNT_ATTR_RDONLY, 0, 0)
        return _call(
            libc.syscall, ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), _b(path),
            ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
        )


    def make_writable(path):
        """Every way there is to make a read-only mount writable again."""
        return {
            "mount -o remount,bind,rw": mount(None, path, None, MS_REMOUNT | MS_BIND),
            "mount -o remount,rw": mount(None, path, None, MS_REMOUNT),
            "mount_setattr(AT_RECURSIVE, attr_clr=RDONLY)": clear_read_only_recursively(path),
        }


    def ioctl(fd, request, arg=None):
        return _call(libc.ioctl, fd, request, arg)


    def ptrace(request, pid):
        return _call(libc.ptrace, request, pid, None, None)


    def pidfd_open(pid):
        ctypes.set_errno(0)
        fd = libc.syscall(ctypes.c_long(SYS_PIDFD_OPEN), ctypes.c_int(pid), ctypes.c_uint(0))
        if fd < 0:
            return _errno_name(ctypes.get_errno())
        os.close(fd)
        return "ok"


    def _write(path, text):
        with open(path, "w") as f:
            f.write(text)


    def enter_user_and_mount_namespace(flags=CLONE_NEWUSER | CLONE_NEWNS):
        """``unshare -Urm`` by hand. A new user namespace comes with every capability in
        it; writing the id maps may be refused (a host root without CAP_SETFCAP may not map
        uid 0), the capabilities come anyway."""
        steps = {"unshare": unshare(flags)}
        steps["setgroups"] = attempt(_write, "/proc/self/setgroups", "deny")
        steps["uid_map"] = attempt(_write, "/proc/self/uid_map", f"0 {os.getuid()} 1")
        steps["gid_map"] = attempt(_write, "/proc/self/gid_map", f"0 {os.getgid()} 1")
        return steps


    def in_child(fn, *args):
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


    def _reached_mount(path):
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


    def mountinfo(reachable_only=False):
        """(mount point, per-mount options, fstype) of every mount in this namespace; with
        ``reachable_only``, only those a path leads to (not those covered by a later mount
        on the same place or on a directory above it)."""
        with open("/proc/self/mountinfo") as f:
            lines = [line.split() for line in f]
        mounts = []
        for fields in lines:
            point = re.sub(r"\\\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if reachable_only and _reached_mount(point) != fields[0]:
                continue
            mounts.append((point, fields[5].split(","), fields[fields.index("-") + 1]))
        return mounts


    def cmdline(pid):
        """A process's command line (empty once it is gone, or while it cannot be read)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read()
        except OSError:
            return b""


    def alive_with(token):
        """Pids of the processes whose command line holds ``token``."""
        names = [name for name in os.listdir("/proc") if name.isdigit()]
        return [int(name) for name in names if token.encode() in cmdline(name)]
'''


def write_attack(pytester: pytest.Pytester, source: str, **values: object) -> None:
    """The inner project: the toolbox and one hostile test module (``$name`` filled in)."""
    pytester.makepyfile(
        acceptance_attacks=ATTACKS,
        test_attack=Template(source).substitute({k: repr(v) for k, v in values.items()}),
    )


def run_inner(
    pytester: pytest.Pytester,
    *args: str,
    prefix: tuple[str, ...] = (),
    stdin: int | None = None,
    pass_fds: tuple[int, ...] = (),
    during: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> pytest.RunResult:
    """``runpytest_subprocess("-p", "rootless", *args)``, with what it cannot do: a command
    in front (``unshare -m``, ``setsid``), a given stdin, fds passed down, and something
    done on the host while the inner pytest runs."""
    basetemp = tempfile.mkdtemp(prefix="runpytest-", dir=pytester.path)
    command = [*prefix, sys.executable, "-mpytest", f"--basetemp={basetemp}", "-p", "rootless"]
    out, err = pytester.path / "stdout", pytester.path / "stderr"
    started = time.monotonic()
    with out.open("w", encoding="utf8") as f1, err.open("w", encoding="utf8") as f2:
        popen = pytester.popen(
            [*command, *args],
            stdout=f1,
            stderr=f2,
            stdin=pytester.CLOSE_STDIN if stdin is None else stdin,
            pass_fds=pass_fds,
        )
        try:
            if during is not None:
                during(popen)
            ret = popen.wait(TIMEOUT)
        finally:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
    result = pytest.RunResult(
        ret,
        out.read_text(errors="replace").splitlines(),
        err.read_text(errors="replace").splitlines(),
        time.monotonic() - started,
    )
    print(
        f"--- inner stdout ---\n{result.stdout.str()}\n--- inner stderr ---\n{result.stderr.str()}"
    )
    return result


def run_attack(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "rootless", "-v", *args, timeout=TIMEOUT)


def alive_with(token: str) -> list[int]:
    """Host pids whose command line holds ``token`` (the host sees container processes)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if token.encode() in f.read():
                        pids.append(int(name))
            except OSError:
                continue
    return pids


@contextlib.contextmanager
def killed_afterwards(token: str) -> Iterator[None]:
    """Whatever the outcome, no process of ``token`` outlives the test that made it."""
    try:
        yield
    finally:
        for pid in alive_with(token):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def gone(token: str) -> list[int]:
    """Wait (boundedly) until no process holds ``token``; what is left, if any."""
    deadline = time.monotonic() + GONE_WITHIN
    while (left := alive_with(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return f.read().splitlines()


def host_mount_points() -> list[str]:
    return [line.split()[4].replace("\\040", " ") for line in host_mounts()]


def snapshot(directory: Path) -> dict[str, tuple[int, ...]]:
    """What a host directory holds: every entry with mode, owner, size, mtime and xattrs."""
    state: dict[str, tuple[int, ...]] = {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        xattrs = len(os.listxattr(path, follow_symlinks=False))
        state[str(path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, xattrs)
    return state


# --- 1. writing a read-only path fails and the host file is unchanged -------------------------

WRITE_READ_ONLY = """
    import os
    from pathlib import Path

    import pytest

    from acceptance_attacks import attempt

    DATA = Path(__file__).parent / "data"
    PRECIOUS = DATA / "precious.txt"


    @pytest.mark.isolated(root=$root)
    def test_write_read_only_paths():
        attacks = {
            "overwrite": lambda: PRECIOUS.write_text("overwritten"),
            "append": lambda: open(PRECIOUS, "a").close(),
            "truncate": lambda: os.truncate(PRECIOUS, 0),
            "chmod": lambda: os.chmod(PRECIOUS, 0o777),
            "chown": lambda: os.chown(PRECIOUS, os.getuid(), os.getgid()),
            "utime": lambda: os.utime(PRECIOUS, (0, 0)),
            "setxattr": lambda: os.setxattr(PRECIOUS, "user.rootless", b"1"),
            "rename": lambda: os.rename(PRECIOUS, DATA / "renamed.txt"),
            "unlink": lambda: os.unlink(PRECIOUS),
            "hard link": lambda: os.link(PRECIOUS, DATA / "link.txt"),
            "symlink": lambda: os.symlink(PRECIOUS, DATA / "symlink.txt"),
            "create": lambda: (DATA / "new.txt").write_text("new"),
            "mkdir": lambda: os.mkdir(DATA / "new"),
            "create in /usr": lambda: open($usr_probe, "w").close(),
        }
        results = {name: attempt(attack) for name, attack in attacks.items()}
        print(results)
        assert results == dict.fromkeys(attacks, "EROFS")
        assert PRECIOUS.read_text() == "original"
"""


@ROOTS
def test_writing_a_read_only_path_fails_and_the_host_file_is_unchanged(
    pytester: pytest.Pytester, root: bool
) -> None:
    data = pytester.mkdir("data")
    (data / "precious.txt").write_text("original")
    before = snapshot(data)
    usr_probe = f"/usr/rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, WRITE_READ_ONLY, root=root, usr_probe=usr_probe)
    run_attack(pytester).assert_outcomes(passed=1)
    assert snapshot(data) == before
    assert (data / "precious.txt").read_text() == "original"
    assert not os.path.lexists(usr_probe)


# --- 2. `mount -o remount,rw` fails, also from a nested `unshare -Urm`, also root=True -------

REMOUNT = """
    import os
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    from acceptance_attacks import attempt, enter_user_and_mount_namespace, in_child, make_writable

    HERE = str(Path(__file__).parent)
    TARGETS = ["/usr", HERE]
    PROBE = $probe


    def remount_then_write(target):
        return {
            **make_writable(target),
            "still read-only": bool(os.statvfs(target).f_flag & os.ST_RDONLY),
            "write after": attempt(lambda: open(os.path.join(target, PROBE), "w").close()),
        }


    def from_nested_namespace(target):
        return {"nested": enter_user_and_mount_namespace(), **remount_then_write(target)}


    def refused(results):
        return results["still read-only"] and "ok" not in [
            v for k, v in results.items() if k not in ("nested", "still read-only")
        ]


    @pytest.mark.isolated(root=$root)
    @pytest.mark.parametrize("target", TARGETS)
    def test_remount_read_write(target):
        here = remount_then_write(target)
        nested = in_child(from_nested_namespace, target)
        print(here, nested, sep="\\n")
        assert refused(here), here
        assert nested["nested"]["unshare"] == "ok", nested  # the attack did get its namespace
        assert refused(nested), nested


    @pytest.mark.isolated(root=$root)
    @pytest.mark.skipif(shutil.which("unshare") is None, reason="no util-linux unshare inside")
    @pytest.mark.parametrize("target", TARGETS)
    def test_unshare_Urm_mount_remount_rw(target):
        script = (
            f"mount -o remount,bind,rw {target}; mount -o remount,rw {target}; "
            f"touch {os.path.join(target, PROBE)}"
        )
        done = subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True)
        assert done.returncode != 0, done
        assert not os.path.exists(os.path.join(target, PROBE))
"""


@ROOTS
def test_remount_rw_fails_also_from_a_nested_unshare_Urm(
    pytester: pytest.Pytester, root: bool
) -> None:
    probe = f"rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, REMOUNT, root=root, probe=probe)
    mounts_before = host_mounts()
    run_attack(pytester).assert_outcomes(passed=4)
    assert not os.path.lexists(os.path.join("/usr", probe))
    assert not os.path.lexists(pytester.path / probe)
    assert host_mounts() == mounts_before


# --- 3. submounts of read-only binds are read-only -------------------------------------------

SUBMOUNTS = """
    import os

    import pytest

    from acceptance_attacks import attempt, make_writable, mountinfo

    DEVICES = ["/dev/" + name for name in ("null", "zero", "full", "random", "urandom", "tty")]
    FRESH = ["/proc", "/tmp", "/var/tmp", "/dev/shm", "/dev/pts", *DEVICES]  # and HOME
    SUBMOUNTS = $submounts
    PROBE = $probe


    @pytest.mark.isolated(root=$root, rootfs=$rootfs)
    def test_submounts():
        reachable = mountinfo(reachable_only=True)
        writable = [point for point, options, _ in reachable if "rw" in options]
        assert [p for p in writable if p not in (*FRESH, os.environ["HOME"])] == []
        points = {point for point, _, _ in mountinfo()}
        assert set(SUBMOUNTS) <= points  # the submounts are there, read-only
        results = {
            submount: {
                **make_writable(submount),
                "mkdir": attempt(os.mkdir, os.path.join(submount, PROBE)),
            }
            for submount in SUBMOUNTS
        }
        print(results)
        assert all(r["mkdir"] == "EROFS" and "ok" not in r.values() for r in results.values()), (
            results
        )
"""

# The host's own mounts that the container replaces with fresh ones (never submounts of a
# read-only bind in there).
REPLACED = ("/proc", "/dev", "/tmp", "/var/tmp")


@ROOTS
@pytest.mark.parametrize(
    "rootfs",
    [pytest.param("minimal", marks=NEEDS_HOST_ROOT), "host"],
    ids=["rootfs=minimal, a host mount under the project", "rootfs=host, the host's submounts"],
)
def test_submounts_of_read_only_binds_are_read_only(
    pytester: pytest.Pytester, root: bool, rootfs: str
) -> None:
    probe = f"rootless-acceptance-{uuid.uuid4().hex}"
    prefix: tuple[str, ...] = ()
    if rootfs == "minimal":
        # A mount under the project (bound read-only, recursively) made on the host side
        # before the session: in a mount namespace of the inner pytest's own, so the
        # real host never has it.
        made = pytester.mkdir("sub")
        submounts = [str(made)]
        script = f'mount -t tmpfs -o size=1m acceptance {made} && echo host > {made}/f && exec "$@"'
        prefix = ("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh")
    else:
        # Not those the container replaces or masks: fresh /proc, /dev and /tmp, the
        # user's home (an empty tmpfs), /run.
        hidden = (*REPLACED, *HOST_MASKED_DIRS, pwd.getpwuid(os.getuid()).pw_dir)
        submounts = sorted(
            p
            for p in set(host_mount_points())
            if p != "/" and not any(is_under(p, h) for h in hidden) and os.path.isdir(p)
        )
        assert submounts, "a Linux host has submounts of / (/sys at least)"
    write_attack(pytester, SUBMOUNTS, root=root, rootfs=rootfs, submounts=submounts, probe=probe)
    mounts_before = host_mounts()
    result = run_inner(pytester, "-v", prefix=prefix)
    result.assert_outcomes(passed=1)
    for submount in submounts:
        created = os.path.join(submount, probe)
        if os.path.lexists(created):
            os.rmdir(created)
            pytest.fail(f"the container created {created} on the host")
    assert host_mounts() == mounts_before
    if rootfs == "minimal":
        assert not os.path.ismount(submounts[0])
        assert os.listdir(submounts[0]) == []


# --- 4. CapEff, CapPrm, CapBnd are 0 and NoNewPrivs is 1 (root=False); what root=True gives --

CAPABILITIES = """
    import os
    import socket
    import stat

    import pytest

    from acceptance_attacks import attempt


    def status():
        with open("/proc/self/status") as f:
            return dict(line.rstrip("\\n").split(":\\t", 1) for line in f if ":\\t" in line)


    @pytest.mark.isolated(root=$root)
    def test_capabilities():
        fields = status()
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
        if $root:
            # uid 0 and every capability, over the container's own namespaces only
            assert (os.getuid(), os.getgid()) == (0, 0)
            assert caps == {
                "CapEff": every, "CapPrm": every, "CapBnd": every, "CapInh": 0, "CapAmb": 0
            }
            assert uid_map == ["0", str($host_uid), "1"]
            socket.sethostname("root-in-here")  # its own UTS namespace
            assert socket.gethostname() == "root-in-here"
        else:
            assert (os.getuid(), os.getgid()) == ($host_uid, $host_gid)
            assert caps == dict.fromkeys(caps, 0)
            assert uid_map == [str($host_uid), str($host_uid), "1"]
            assert attempt(socket.sethostname, "not-root") == "EPERM"
"""


@ROOTS
def test_capabilities_are_zero_and_no_new_privs_is_1(pytester: pytest.Pytester, root: bool) -> None:
    hostname = socket.gethostname()
    write_attack(pytester, CAPABILITIES, root=root, host_uid=os.getuid(), host_gid=os.getgid())
    run_attack(pytester).assert_outcomes(passed=1)
    assert socket.gethostname() == hostname


# --- 5. TIOCSTI and the high-bit variant (1<<32)|TIOCSTI fail --------------------------------

TIOCSTI = """
    import os

    import pytest

    from acceptance_attacks import TIOCSCTTY, TIOCSTI, attempt, ioctl

    HIGH_BIT = (1 << 32) | TIOCSTI  # a seccomp filter comparing 64 bits misses it (CVE-2019-10063)


    def inject(fd):
        return {"TIOCSTI": ioctl(fd, TIOCSTI, b"X"), "(1<<32)|TIOCSTI": ioctl(fd, HIGH_BIT, b"Y")}


    @pytest.mark.isolated(root=$root)
    def test_inject_keystrokes():
        results = {"open /dev/tty": attempt(os.open, "/dev/tty", os.O_RDWR)}
        ttys = [int(fd) for fd in os.listdir("/proc/self/fd") if os.isatty(int(fd))]
        for fd in ttys:
            results[f"fd {fd}"] = inject(fd)
            # Then as its controlling terminal: after setsid() the test is a session leader
            results[f"fd {fd}: TIOCSCTTY"] = ioctl(fd, TIOCSCTTY, None)
            results[f"fd {fd} as controlling terminal"] = inject(fd)
        print(results)
        assert results["open /dev/tty"] == "ENXIO"  # no controlling terminal
        injected = [k for k, v in results.items() if isinstance(v, dict) and "ok" in v.values()]
        assert injected == [], results
"""


@ROOTS
@pytest.mark.parametrize(
    "controlling",
    [
        pytest.param(True, id="the terminal is pytest's controlling terminal"),
        # The test process keeps a host tty fd (pytest's stdin, kept for --pdb) and is a
        # session leader after setsid(): it can make a tty that is nobody's controlling
        # terminal its own (TIOCSCTTY). The seccomp filter still refuses TIOCSTI.
        pytest.param(False, id="the terminal is pytest's stdin only"),
    ],
)
def test_tiocsti_and_its_high_bit_variant_fail(
    pytester: pytest.Pytester, root: bool, controlling: bool
) -> None:
    if controlling and shutil.which("setsid") is None:
        pytest.skip("util-linux setsid is needed to give pytest a controlling terminal")
    write_attack(pytester, TIOCSTI, root=root)
    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # anything injected is readable at once, no newline needed
        prefix = ("setsid", "--ctty", "--wait") if controlling else ()
        result = run_inner(pytester, "-v", prefix=prefix, stdin=slave)
        os.set_blocking(slave, False)
        try:
            injected = os.read(slave, 1024)
        except BlockingIOError:
            injected = b""
    finally:
        os.close(master)
        os.close(slave)
    assert injected == b"", f"keystrokes typed into the host's terminal: {injected!r}"
    result.assert_outcomes(passed=1)


# --- 6. a host TCP listener on 127.0.0.1, a host abstract unix socket and a host unix socket
#        file are unreachable --------------------------------------------------------------

SOCKETS = """
    import os
    import socket

    import pytest

    from acceptance_attacks import attempt

    FAMILY, ADDRESS = $family, $address


    @pytest.mark.isolated(root=$root)
    def test_connect_to_the_host():
        if isinstance(ADDRESS, str):  # a socket file: not even there
            assert not os.path.lexists(ADDRESS)
        with socket.socket(FAMILY, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            outcome = attempt(client.connect, ADDRESS)
        assert outcome in ("ECONNREFUSED", "ENOENT"), outcome
"""


@ROOTS
@pytest.mark.parametrize(
    "kind",
    ["TCP listener on 127.0.0.1", "abstract unix socket", "unix socket file"],
)
def test_host_sockets_are_unreachable(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, root: bool, kind: str
) -> None:
    address: object
    if kind.startswith("TCP"):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        address = listener.getsockname()
    elif kind.startswith("abstract"):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = f"\0rootless-acceptance-{uuid.uuid4().hex}".encode()
        listener.bind(address)
    else:  # in a host directory of its own, as a daemon's socket would be
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = str(tmp_path_factory.mktemp("daemon") / "daemon.sock")
        listener.bind(address)
    with listener:
        listener.listen()
        listener.setblocking(False)
        write_attack(pytester, SOCKETS, root=root, family=int(listener.family), address=address)
        result = run_attack(pytester)
        try:
            connection, _ = listener.accept()
        except BlockingIOError:  # nobody connected
            pass
        else:
            connection.close()
            pytest.fail(f"a connection from inside reached the host's {kind}")
    result.assert_outcomes(passed=1)


# --- 7. a host process of the same uid can be neither seen, signalled nor ptraced ------------

HOST_PROCESS = """
    import os
    import signal

    import pytest

    from acceptance_attacks import (
        PTRACE_ATTACH, PTRACE_SEIZE, alive_with, attempt, pidfd_open, ptrace,
    )

    PID, TOKEN = $pid, $token


    @pytest.mark.isolated(root=$root)
    def test_reach_the_host_process():
        seen = {
            "/proc/PID": os.path.exists(f"/proc/{PID}"),
            "by its command line": alive_with(TOKEN),
        }
        print(seen)
        assert seen == {"/proc/PID": False, "by its command line": []}
        reached = {
            "kill(pid, 0)": attempt(os.kill, PID, 0),
            "kill(pid, SIGSTOP)": attempt(os.kill, PID, signal.SIGSTOP),
            "kill(pid, SIGKILL)": attempt(os.kill, PID, signal.SIGKILL),
            "killpg(pid, SIGKILL)": attempt(os.killpg, PID, signal.SIGKILL),
            "ptrace(PTRACE_ATTACH)": ptrace(PTRACE_ATTACH, PID),
            "ptrace(PTRACE_SEIZE)": ptrace(PTRACE_SEIZE, PID),
            "pidfd_open": pidfd_open(PID),
        }
        print(reached)
        assert reached == dict.fromkeys(reached, "ESRCH")
"""


def process_state(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return {"State": fields["State"].split()[0], "TracerPid": fields["TracerPid"].strip()}


@ROOTS
def test_a_host_process_of_the_same_uid_can_be_neither_seen_signalled_nor_ptraced(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    # its own process group, so that killpg() from inside would hit nothing else
    host = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", token], start_new_session=True
    )
    try:
        write_attack(pytester, HOST_PROCESS, root=root, pid=host.pid, token=token)
        result = run_attack(pytester)
        assert host.poll() is None, "the host process was killed from inside"
        assert process_state(host.pid) == {"State": "S", "TracerPid": "0"}
    finally:
        host.kill()
        host.wait()
    result.assert_outcomes(passed=1)


# --- 8. /proc lists only the container's processes -------------------------------------------

PROC = """
    import os

    import pytest

    from acceptance_attacks import mount


    def listed(proc="/proc"):
        return sorted(int(name) for name in os.listdir(proc) if name.isdigit())


    @pytest.fixture(scope="session")
    def host_pytest_pid():
        return os.getpid()  # a session fixture is made by pytest itself, on the host


    @pytest.mark.isolated(root=$root)
    def test_proc(host_pytest_pid):
        assert listed() == [1, 2]
        assert not os.path.exists(f"/proc/{host_pytest_pid}")
        # a proc of its own making shows the same namespace, or cannot be made
        os.mkdir("/tmp/proc")
        made = mount("proc", "/tmp/proc", "proc")
        assert made in ("ok", "EPERM")
        if made == "ok":
            assert listed("/tmp/proc") == [1, 2]
"""


@ROOTS
def test_proc_lists_only_the_containers_processes(pytester: pytest.Pytester, root: bool) -> None:
    write_attack(pytester, PROC, root=root)
    run_attack(pytester).assert_outcomes(passed=1)


# --- 9. /proc/sys writes fail ----------------------------------------------------------------

PROC_SYS = """
    import os

    import pytest

    from acceptance_attacks import (
        CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, attempt, enter_user_and_mount_namespace,
        in_child, make_writable, mount, mountinfo, umount,
    )

    # Global settings (core_pattern runs a program as host root on a crash: the classic
    # escape), opened for writing only: nothing is ever written, even if the open succeeds.
    TARGETS = ("sys/kernel/core_pattern", "sys/fs/lease-break-time", "sysrq-trigger")


    def open_for_writing(path):
        def attack():
            os.close(os.open(path, os.O_WRONLY))

        return attempt(attack)


    def through_every_proc():
        procs = [point for point, _, fstype in mountinfo() if fstype == "proc"]
        procs.append("/dev/.rootless-proc/proc")  # a hidden one, if it can be reached
        return {
            f"{proc}/{target}": open_for_writing(f"{proc}/{target}")
            for proc in procs
            for target in TARGETS
        }


    def undo_the_covers():
        return {
            **{f"{k} /proc/sys": v for k, v in make_writable("/proc/sys").items()},
            "umount /proc/sys": umount("/proc/sys"),
            **{f"then /proc/{t}": open_for_writing(f"/proc/{t}") for t in TARGETS},
        }


    def in_a_fresh_proc():
        os.makedirs("/tmp/fresh-proc", exist_ok=True)
        steps = enter_user_and_mount_namespace(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)

        def pid1():  # a fresh proc is for a process inside the new PID namespace
            made = mount("proc", "/tmp/fresh-proc", "proc")
            if made != "ok":
                return {"mount proc": made}
            return {f"fresh /proc/{t}": open_for_writing(f"/tmp/fresh-proc/{t}") for t in TARGETS}

        return {**steps, **in_child(pid1)}


    def refused(results):
        return [k for k, v in results.items() if v == "ok" and not k.endswith(STEPS)] == []


    STEPS = ("unshare", "setgroups", "uid_map", "gid_map")


    @pytest.mark.isolated(root=$root)
    def test_write_proc_sys():
        here = through_every_proc()
        assert refused(here), here
        nested = in_child(lambda: {**enter_user_and_mount_namespace(), **undo_the_covers()})
        assert refused(nested), nested
        fresh = in_child(in_a_fresh_proc)
        assert refused(fresh), fresh
        own = undo_the_covers()
        print(here, nested, fresh, own, sep="\\n")
        assert refused(own), own
"""

SYSCTLS = ("/proc/sys/kernel/core_pattern", "/proc/sys/fs/lease-break-time")


@ROOTS
def test_proc_sys_writes_fail(pytester: pytest.Pytester, root: bool) -> None:
    before = {path: Path(path).read_text() for path in SYSCTLS}
    write_attack(pytester, PROC_SYS, root=root)
    run_attack(pytester).assert_outcomes(passed=1)
    assert {path: Path(path).read_text() for path in SYSCTLS} == before


# --- 10. an fd inherited by pytest is closed inside ------------------------------------------

INHERITED_FD = """
    import os

    import pytest

    from acceptance_attacks import attempt

    PASSED_DOWN = $passed_down  # fds the inner pytest inherited from its parent
    SECRET = $secret


    @pytest.fixture(scope="session")
    def opened_by_pytest():
        fd = os.open(SECRET, os.O_RDWR)  # an fd pytest itself holds (a plugin's, a conftest's)
        yield fd
        os.close(fd)


    @pytest.mark.isolated(root=$root)
    def test_use_inherited_fds(opened_by_pytest):
        for fd in (*PASSED_DOWN, opened_by_pytest):
            assert attempt(os.fstat, fd) == "EBADF"
            assert attempt(os.write, fd, b"written from inside") == "EBADF"
        for fd in os.listdir("/proc/self/fd"):
            target = attempt(os.readlink, f"/proc/self/fd/{fd}")
            assert SECRET not in target
"""


@ROOTS
def test_an_fd_inherited_by_pytest_is_closed_inside(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, root: bool
) -> None:
    secret = tmp_path_factory.mktemp("host-only") / "secret.txt"
    secret.write_text("secret")
    file_fd = os.open(secret, os.O_RDWR)
    read_end, write_end = os.pipe()
    try:
        write_attack(
            pytester,
            INHERITED_FD,
            root=root,
            passed_down=(file_fd, write_end),
            secret=str(secret),
        )
        result = run_inner(pytester, "-v", pass_fds=(file_fd, write_end))
        os.set_blocking(read_end, False)
        with pytest.raises(BlockingIOError):  # nothing came down the pipe
            os.read(read_end, 1024)
    finally:
        for fd in (file_fd, read_end, write_end):
            os.close(fd)
    assert secret.read_text() == "secret"
    result.assert_outcomes(passed=1)


# --- 11. /proc/1/fd is unreadable ------------------------------------------------------------

PROC_1 = """
    import os

    import pytest

    from acceptance_attacks import attempt


    def read(path):
        with open(path, "rb") as f:
            f.read(1)


    @pytest.mark.isolated(root=$root)
    def test_reach_into_init():
        results = {
            "readlink /proc/1/exe": attempt(os.readlink, "/proc/1/exe"),
            "open /proc/1/exe": attempt(read, "/proc/1/exe"),
            "read /proc/1/environ": attempt(read, "/proc/1/environ"),
            "read /proc/1/mem": attempt(read, "/proc/1/mem"),
            "list /proc/1/root": attempt(os.listdir, "/proc/1/root"),
            "list /proc/1/cwd": attempt(os.listdir, "/proc/1/cwd"),
        }
        # init holds one fd (its channel to the host): no link of /proc/1/fd may be followed
        for fd in range(64):
            path = f"/proc/1/fd/{fd}"
            for how, attack in (("readlink", os.readlink), ("open", read)):
                outcome = attempt(attack, path)
                if outcome != "ENOENT":
                    results[f"{how} {path}"] = outcome
        if os.getuid() != 0:  # the directory itself is root's: uid 0 may list fd numbers
            results["list /proc/1/fd"] = attempt(os.listdir, "/proc/1/fd")
        print(results)
        assert results == dict.fromkeys(results, "EACCES")
"""


@ROOTS
def test_proc_1_fd_is_unreadable(pytester: pytest.Pytester, root: bool) -> None:
    write_attack(pytester, PROC_1, root=root)
    run_attack(pytester).assert_outcomes(passed=1)


# --- 12. $HOME files of the host and the host's /tmp are invisible ---------------------------

HOME_AND_TMP = """
    import os

    import pytest

    HOST_HOME, HOST_TMP_MARKER, WRITTEN = $host_home, $host_tmp_marker, $written


    @pytest.mark.isolated(root=$root)
    def test_look_for_host_files():
        home = os.environ["HOME"]
        assert os.listdir(home) == []
        for path in (
            os.path.join(HOST_HOME, ".ssh", "id_ed25519"),
            os.path.join(HOST_HOME, ".bashrc"),
            HOST_TMP_MARKER,
            os.path.dirname(HOST_TMP_MARKER),
        ):
            assert not os.path.lexists(path), path
        for directory in (home, "/tmp"):  # what the test writes stays in here
            with open(os.path.join(directory, WRITTEN), "w") as f:
                f.write("from inside")
"""


@ROOTS
def test_host_home_and_tmp_are_invisible(
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    root: bool,
) -> None:
    home = tmp_path_factory.mktemp("host-home")  # never the real $HOME
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("private key")
    (home / ".bashrc").write_text("export SECRET=1\n")
    marker = tmp_path_factory.mktemp("host-tmp") / "marker"
    marker.write_text("on the host")
    host_tmp = os.path.realpath(tempfile.gettempdir())
    assert str(marker).startswith(host_tmp + "/"), "pytest's temporary directories are in /tmp"
    monkeypatch.setenv("HOME", str(home))  # the inner pytest's HOME (popen copies environ)
    written = f"rootless-acceptance-{uuid.uuid4().hex}"
    home_before = snapshot(home)
    write_attack(
        pytester,
        HOME_AND_TMP,
        root=root,
        host_home=str(home),
        host_tmp_marker=str(marker),
        written=written,
    )
    run_attack(pytester).assert_outcomes(passed=1)
    assert snapshot(home) == home_before
    assert not os.path.lexists(os.path.join(host_tmp, written))


# --- 13. exit status 71 -> 71 and SIGABRT -> 134 (as reported) ------------------------------

EXIT_STATUS = """
    import os

    import pytest


    @pytest.mark.isolated(root=$root)
    def test_exit_71():
        os._exit(71)


    @pytest.mark.isolated(root=$root)
    def test_abort():
        os.abort()


    def test_the_session_goes_on():
        pass
"""


@ROOTS
def test_exit_status_71_and_sigabrt_134_are_reported(pytester: pytest.Pytester, root: bool) -> None:
    write_attack(pytester, EXIT_STATUS, root=root)
    result = run_attack(pytester)
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*rootless: the test process exited with status 71 before reporting during call.",
            "*rootless: the test process was killed by signal 6 (SIGABRT, exit status 134) "
            "during call.",
        ],
        consecutive=False,
    )


# --- 14. background and double-forked daemons do not outlive the test -----------------------

DAEMONS = """
    import subprocess
    import time

    import pytest

    from acceptance_attacks import alive_with, cmdline

    TOKEN, GONE_WITHIN = $token, $gone_within


    @pytest.mark.isolated(root=$root)
    def test_start_daemons():
        keep = f"sleep 300; : {TOKEN}"
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
        def settled():
            wrappers = (b"setsid", b"nohup")
            return [p for p in alive_with(TOKEN) if not any(w in cmdline(p) for w in wrappers)]

        deadline = time.monotonic() + GONE_WITHIN
        # one reading decides: two can differ (a process in the middle of an exec)
        while len(found := settled()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(found) >= 5, [cmdline(p) for p in alive_with(TOKEN)]


    def test_none_outlived_it():  # on the host, in the same session
        deadline = time.monotonic() + GONE_WITHIN
        while alive_with(TOKEN) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alive_with(TOKEN) == []
"""


@ROOTS
def test_background_and_double_forked_daemons_do_not_outlive_the_test(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, DAEMONS, root=root, token=token, gone_within=GONE_WITHIN)
    with killed_afterwards(token):
        result = run_attack(pytester)
        assert gone(token) == []
    result.assert_outcomes(passed=2)


# --- 15. SIGKILL to pytest itself leaves no container process behind ------------------------

SIGKILLED_PYTEST = """
    import subprocess
    import time

    import pytest

    TOKEN = $token


    @pytest.mark.isolated(root=$root)
    def test_wait_to_be_killed():
        keep = f"sleep 300; : {TOKEN}"
        subprocess.Popen(["sh", "-c", keep])
        subprocess.Popen(["sh", "-c", f"setsid sh -c '{keep}' </dev/null >/dev/null 2>&1 &"])
        time.sleep(300)
"""


@ROOTS
def test_sigkill_to_pytest_leaves_no_container_process_behind(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, SIGKILLED_PYTEST, root=root, token=token)
    seen: list[int] = []

    def kill_pytest_when_they_run(popen: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while len(alive_with(token)) < 2 and popen.poll() is None:
            assert time.monotonic() < deadline, "the container's processes never started"
            time.sleep(0.05)
        seen.extend(alive_with(token))
        popen.kill()  # SIGKILL: pytest gets no chance to clean up
        popen.wait()

    with killed_afterwards(token):
        result = run_inner(pytester, "-v", during=kill_pytest_when_they_run)
        assert result.ret == -signal.SIGKILL
        assert len(seen) >= 2, "the container's processes were never seen running"
        assert gone(token) == []


# --- 16. no mount leaks out of the container or into it -------------------------------------

MOUNT_OUT = """
    import os
    from pathlib import Path

    import pytest

    from acceptance_attacks import (
        MS_BIND, MS_REC, MS_SHARED, enter_user_and_mount_namespace, in_child, mount,
    )

    TARGET = str(Path(__file__).parent / "target")  # a project directory: on the host too
    BEFORE = []


    def mountinfo():
        with open("/proc/self/mountinfo") as f:
            return f.read()


    def test_before():  # on the host, in the inner pytest's mount namespace
        BEFORE.append(mountinfo())


    def make_mounts():
        os.makedirs("/tmp/mnt", exist_ok=True)
        return {
            "make / shared": mount(None, "/", None, MS_REC | MS_SHARED),
            "tmpfs on the project": mount("acceptance", TARGET, "tmpfs"),
            "bind /usr on the project": mount("/usr", TARGET, None, MS_BIND),
            "make /tmp shared": mount(None, "/tmp", None, MS_REC | MS_SHARED),
            "tmpfs in /tmp": mount("acceptance", "/tmp/mnt", "tmpfs"),
        }


    @pytest.mark.isolated(root=$root)
    def test_mount_inside():
        here = make_mounts()
        nested = in_child(lambda: {**enter_user_and_mount_namespace(), **make_mounts()})
        print(here, nested, sep="\\n")
        if $root:  # root in here may mount, in here
            assert here["tmpfs on the project"] == "ok", here
        assert nested["unshare"] == "ok", nested
        assert nested["tmpfs on the project"] == "ok", nested


    def test_after():
        assert mountinfo() == BEFORE[0]
        assert not os.path.ismount(TARGET)
"""


@ROOTS
def test_no_mount_leaks_out_of_the_container(pytester: pytest.Pytester, root: bool) -> None:
    target = pytester.mkdir("target")
    write_attack(pytester, MOUNT_OUT, root=root)
    # As root, the inner pytest runs where every mount is shared (as on a systemd host),
    # in a mount namespace of its own so the real host is safe whatever happens.
    prefix = ("unshare", "-m", "--propagation", "shared") if AS_ROOT else ()
    before = host_mounts()
    result = run_inner(pytester, "-v", prefix=prefix)
    assert host_mounts() == before
    assert not os.path.ismount(target)
    assert os.listdir(target) == []
    result.assert_outcomes(passed=3)


MOUNT_IN = """
    import os
    from pathlib import Path

    import pytest

    from acceptance_attacks import mountinfo

    HERE = Path(__file__).parent


    @pytest.mark.isolated(root=$root)
    def test_host_mounts_later():
        with open(HERE / "go") as go:  # the host mounts HERE/late, then says so
            assert go.read() == "mounted"
        assert not os.path.ismount(HERE / "late")
        assert os.listdir(HERE / "late") == []
        assert str(HERE / "late") not in [point for point, _, _ in mountinfo()]
"""


@NEEDS_HOST_ROOT
@ROOTS
def test_no_mount_leaks_into_the_container(pytester: pytest.Pytester, root: bool) -> None:
    late = pytester.mkdir("late")
    go = pytester.path / "go"
    os.mkfifo(go)
    write_attack(pytester, MOUNT_IN, root=root)
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        pytest.skip("util-linux nsenter is needed to mount in the inner pytest's namespace")

    def mount_on_the_host_during_the_test(popen: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:  # the test is waiting once it opened the fifo
            try:
                fd = os.open(go, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO or popen.poll() is not None:
                    return
                assert time.monotonic() < deadline, "the isolated test never started"
                time.sleep(0.05)
        script = f"mount -t tmpfs -o size=1m acceptance {late} && echo host > {late}/file"
        subprocess.run([nsenter, "-t", str(popen.pid), "-m", "sh", "-c", script], check=True)
        os.write(fd, b"mounted")
        os.close(fd)

    # The inner pytest in a mount namespace of its own where every mount is shared (as on
    # a systemd host): the late mount propagates to every peer and slave of the project's
    # mount, and would reach the container unless its mounts are private.
    result = run_inner(
        pytester,
        "-v",
        prefix=("unshare", "-m", "--propagation", "shared"),
        during=mount_on_the_host_during_the_test,
    )
    assert not os.path.ismount(late)
    assert os.listdir(late) == []
    result.assert_outcomes(passed=1)


# --- 17. a hang with `timeout` set is stopped, reported, and the session goes on -------------

HANG = """
    import subprocess
    import time

    import pytest

    from acceptance_attacks import alive_with

    TOKEN, GONE_WITHIN = $token, $gone_within


    @pytest.mark.isolated(root=$root, timeout=1)
    def test_hang():
        subprocess.Popen(["sh", "-c", f"sleep 300; : {TOKEN}"])
        time.sleep(300)


    def test_the_session_goes_on():
        deadline = time.monotonic() + GONE_WITHIN
        while alive_with(TOKEN) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alive_with(TOKEN) == []
"""


@ROOTS
def test_a_hang_with_timeout_is_stopped_and_the_session_goes_on(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, HANG, root=root, token=token, gone_within=GONE_WITHIN)
    with killed_afterwards(token):
        result = run_attack(pytester)
        assert gone(token) == []
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*rootless:*timeout=1s*during call*", "*in test_hang*"])
