"""What an isolated test must withstand (SECURITY.md, "What it promises"), as attacks.

One test per attack, numbered in the sections below (``pytest -k acceptance`` selects
them). Each one writes a hostile test, runs it isolated (``@pytest.mark.isolated``) in a
real inner pytest (``-p rootless``, in a subprocess), and asserts that the attack failed
inside **and** left no trace on the host. Where ``root`` applies, each runs with
``root=False`` and ``root=True``. The attacks themselves are in ``attacks.py``, beside
this file: raw system calls through ctypes (that is test code, and it runs inside the
container). Each inner project gets a copy of it, the values the attack needs as the
constants of a ``given.py``, and a hostile test module that calls the attack.

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
with ``cpu`` (e2e/test_limits.py has them).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import tty
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_rootless.kernel.paths import is_under
from pytest_rootless.runtime.rootfs import HOST_MASKED_DIRS

from .. import procscan

TIMEOUT = 120
#: How long a process of a finished container may take to be gone (the kernel reaps a
#: dead PID namespace asynchronously); a bound against hanging, never a measurement.
GONE_WITHIN = 10.0

ROOTS = pytest.mark.parametrize("root", [False, True], ids=["root=False", "root=True"])
AS_ROOT = os.geteuid() == 0
NEEDS_HOST_ROOT = pytest.mark.skipif(
    not AS_ROOT, reason="making a mount on the host side needs root (an unprivileged run cannot)"
)


#: The hostile tests' toolbox and attacks, copied into each inner project (as attacks.py).
ATTACKS = Path(__file__).with_name("attacks.py")


def write_attack(pytester: pytest.Pytester, source: str, **values: object) -> None:
    """The inner project: the attacks (with the /proc scan they use), ``given.py`` holding
    ``values`` as upper-case constants, and one hostile test module."""
    given = "".join(f"{name.upper()} = {value!r}\n" for name, value in sorted(values.items()))
    pytester.makeconftest('import pytest\n\npytest.register_assert_rewrite("attacks")\n')
    pytester.makepyfile(
        attacks=ATTACKS.read_text(),
        procscan=procscan.source(),
        given=given,
        test_attack=source,
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


@contextlib.contextmanager
def killed_afterwards(token: str) -> Iterator[None]:
    """Whatever the outcome, no process of ``token`` outlives the test that made it."""
    try:
        yield
    finally:
        for pid in procscan.tagged(token):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def gone(token: str) -> dict[int, list[str]]:
    """Wait (boundedly) until no process holds ``token``; what is left, if any."""
    return procscan.gone(token, GONE_WITHIN)


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
    from pathlib import Path

    import pytest

    import attacks
    from given import ROOT, USR_PROBE


    @pytest.mark.isolated(root=ROOT)
    def test_write_read_only_paths():
        attacks.write_read_only_paths(Path(__file__).parent / "data", USR_PROBE)
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
    import shutil
    from pathlib import Path

    import pytest

    import attacks
    from given import PROBE, ROOT

    TARGETS = ["/usr", str(Path(__file__).parent)]


    @pytest.mark.isolated(root=ROOT)
    @pytest.mark.parametrize("target", TARGETS)
    def test_remount_read_write(target):
        attacks.remount_read_write(target, PROBE)


    @pytest.mark.isolated(root=ROOT)
    @pytest.mark.skipif(shutil.which("unshare") is None, reason="no util-linux unshare inside")
    @pytest.mark.parametrize("target", TARGETS)
    def test_unshare_Urm_mount_remount_rw(target):
        attacks.unshare_urm_mount_remount_rw(target, PROBE)
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
    import pytest

    import attacks
    from given import PROBE, ROOT, ROOTFS, SUBMOUNTS


    @pytest.mark.isolated(root=ROOT, rootfs=ROOTFS)
    def test_submounts():
        attacks.submounts(SUBMOUNTS, PROBE)
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
    import pytest

    import attacks
    from given import HOST_GID, HOST_UID, ROOT


    @pytest.mark.isolated(root=ROOT)
    def test_capabilities():
        attacks.capabilities(ROOT, HOST_UID, HOST_GID)
"""


@ROOTS
def test_capabilities_are_zero_and_no_new_privs_is_1(pytester: pytest.Pytester, root: bool) -> None:
    hostname = socket.gethostname()
    write_attack(pytester, CAPABILITIES, root=root, host_uid=os.getuid(), host_gid=os.getgid())
    run_attack(pytester).assert_outcomes(passed=1)
    assert socket.gethostname() == hostname


# --- 5. TIOCSTI and the high-bit variant (1<<32)|TIOCSTI fail --------------------------------

TIOCSTI = """
    import pytest

    import attacks
    from given import ROOT


    @pytest.mark.isolated(root=ROOT)
    def test_inject_keystrokes():
        attacks.inject_keystrokes()
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
    import pytest

    import attacks
    from given import ADDRESS, FAMILY, ROOT


    @pytest.mark.isolated(root=ROOT)
    def test_connect_to_the_host():
        attacks.connect_to_the_host(FAMILY, ADDRESS)
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
    import pytest

    import attacks
    from given import PID, ROOT, TOKEN


    @pytest.mark.isolated(root=ROOT)
    def test_reach_the_host_process():
        attacks.reach_the_host_process(PID, TOKEN)
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

    import attacks
    from given import ROOT


    @pytest.fixture(scope="session")
    def host_pytest_pid():
        return os.getpid()  # a session fixture is made by pytest itself, on the host


    @pytest.mark.isolated(root=ROOT)
    def test_proc(host_pytest_pid):
        attacks.look_at_proc(host_pytest_pid)
"""


@ROOTS
def test_proc_lists_only_the_containers_processes(pytester: pytest.Pytester, root: bool) -> None:
    write_attack(pytester, PROC, root=root)
    run_attack(pytester).assert_outcomes(passed=1)


# --- 9. /proc/sys writes fail ----------------------------------------------------------------

PROC_SYS = """
    import pytest

    import attacks
    from given import ROOT


    @pytest.mark.isolated(root=ROOT)
    def test_write_proc_sys():
        attacks.write_proc_sys()
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

    import attacks
    from given import PASSED_DOWN, ROOT, SECRET  # PASSED_DOWN: fds the inner pytest inherited


    @pytest.fixture(scope="session")
    def opened_by_pytest():
        fd = os.open(SECRET, os.O_RDWR)  # an fd pytest itself holds (a plugin's, a conftest's)
        yield fd
        os.close(fd)


    @pytest.mark.isolated(root=ROOT)
    def test_use_inherited_fds(opened_by_pytest):
        attacks.use_inherited_fds((*PASSED_DOWN, opened_by_pytest), SECRET)
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
    import pytest

    import attacks
    from given import ROOT


    @pytest.mark.isolated(root=ROOT)
    def test_reach_into_init():
        attacks.reach_into_init()
"""


@ROOTS
def test_proc_1_fd_is_unreadable(pytester: pytest.Pytester, root: bool) -> None:
    write_attack(pytester, PROC_1, root=root)
    run_attack(pytester).assert_outcomes(passed=1)


# --- 12. $HOME files of the host and the host's /tmp are invisible ---------------------------

HOME_AND_TMP = """
    import pytest

    import attacks
    from given import HOST_HOME, HOST_TMP_MARKER, ROOT, WRITTEN


    @pytest.mark.isolated(root=ROOT)
    def test_look_for_host_files():
        attacks.look_for_host_files(HOST_HOME, HOST_TMP_MARKER, WRITTEN)
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

    from given import ROOT


    @pytest.mark.isolated(root=ROOT)
    def test_exit_71():
        os._exit(71)


    @pytest.mark.isolated(root=ROOT)
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
    import pytest

    import attacks
    from given import GONE_WITHIN, ROOT, TOKEN


    @pytest.mark.isolated(root=ROOT)
    def test_start_daemons():
        attacks.start_daemons(TOKEN, GONE_WITHIN)


    def test_none_outlived_it():  # on the host, in the same session
        attacks.none_left(TOKEN, GONE_WITHIN)
"""


@ROOTS
def test_background_and_double_forked_daemons_do_not_outlive_the_test(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, DAEMONS, root=root, token=token, gone_within=GONE_WITHIN)
    with killed_afterwards(token):
        result = run_attack(pytester)
        assert gone(token) == {}
    result.assert_outcomes(passed=2)


# --- 15. SIGKILL to pytest itself leaves no container process behind ------------------------

SIGKILLED_PYTEST = """
    import pytest

    import attacks
    from given import ROOT, TOKEN


    @pytest.mark.isolated(root=ROOT)
    def test_wait_to_be_killed():
        attacks.wait_to_be_killed(TOKEN)
"""


@ROOTS
def test_sigkill_to_pytest_leaves_no_container_process_behind(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, SIGKILLED_PYTEST, root=root, token=token)
    seen: dict[int, list[str]] = {}

    def kill_pytest_when_they_run(popen: subprocess.Popen[bytes]) -> None:
        # one reading decides: two can differ (a process in the middle of an exec)
        seen.update(
            procscan.settle(
                lambda: procscan.tagged(token),
                lambda running: len(running) >= 2 or popen.poll() is not None,
                TIMEOUT,
            )
        )
        popen.kill()  # SIGKILL: pytest gets no chance to clean up
        popen.wait()

    with killed_afterwards(token):
        result = run_inner(pytester, "-v", during=kill_pytest_when_they_run)
        assert result.ret == -signal.SIGKILL
        assert len(seen) >= 2, f"the container's processes were never seen running: {seen}"
        assert gone(token) == {}


# --- 16. no mount leaks out of the container or into it -------------------------------------

MOUNT_OUT = """
    import os
    from pathlib import Path

    import pytest

    import attacks
    from given import ROOT

    TARGET = str(Path(__file__).parent / "target")  # a project directory: on the host too
    BEFORE = []


    def test_before():  # on the host, in the inner pytest's mount namespace
        BEFORE.append(attacks.mountinfo_text())


    @pytest.mark.isolated(root=ROOT)
    def test_mount_inside():
        attacks.mount_inside(TARGET, ROOT)


    def test_after():
        assert attacks.mountinfo_text() == BEFORE[0]
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
    from pathlib import Path

    import pytest

    import attacks
    from given import ROOT


    @pytest.mark.isolated(root=ROOT)
    def test_host_mounts_later():
        attacks.host_mounts_later(Path(__file__).parent)
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
    import pytest

    import attacks
    from given import GONE_WITHIN, ROOT, TOKEN


    @pytest.mark.isolated(root=ROOT, timeout=1)
    def test_hang():
        attacks.hang(TOKEN)


    def test_the_session_goes_on():
        attacks.none_left(TOKEN, GONE_WITHIN)
"""


@ROOTS
def test_a_hang_with_timeout_is_stopped_and_the_session_goes_on(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, HANG, root=root, token=token, gone_within=GONE_WITHIN)
    with killed_afterwards(token):
        result = run_attack(pytester)
        assert gone(token) == {}
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*rootless:*timeout=1s*during call*", "*in test_hang*"])


# --- 18. the host's keyrings are neither listed nor reachable ---------------------------------

KEYRINGS = """
    import pytest

    import attacks
    from given import ROOT, SECRET, TOKEN, USER_KEYRING, VICTIM


    @pytest.mark.isolated(root=ROOT)
    def test_reach_the_host_keyrings():
        attacks.reach_the_host_keyrings(USER_KEYRING, SECRET, VICTIM, TOKEN)
"""

#: The host's side of the keyring attack, in a process of its own: it joins a fresh session
#: keyring and links the user keyring into it, so it possesses (may read and unlink) the
#: keys it adds there, without touching pytest's own keyrings.
HOST_KEYS = """
import ctypes, json, os, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]


def call(number, *args):
    result = libc.syscall(number, *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def search(keyring, name):
    try:
        return call(KEYCTL, 10, keyring, b"user", name.encode(), 0)  # KEYCTL_SEARCH
    except OSError:
        return None


action, token = sys.argv[1:]
call(KEYCTL, 1, None)  # KEYCTL_JOIN_SESSION_KEYRING: a fresh one
user = call(KEYCTL, 0, -4, 1)  # KEYCTL_GET_KEYRING_ID of KEY_SPEC_USER_KEYRING
call(KEYCTL, 8, user, -3)  # KEYCTL_LINK into the session keyring
names = [f"{token}-{n}" for n in ("secret", "victim", "planted")]
if action == "add":
    keys = [call(ADD_KEY, b"user", n.encode(), n.encode(), len(n), user) for n in names[:2]]
    print(json.dumps({"user_keyring": user, "secret": keys[0], "victim": keys[1]}))
else:
    found = {n: search(user, n) for n in names}
    buffer = ctypes.create_string_buffer(256)
    secret = found[names[0]]
    size = call(KEYCTL, 11, secret, ctypes.addressof(buffer), 256) if secret else 0
    for key in found.values():
        if key is not None and action == "remove":
            call(KEYCTL, 9, key, user)  # KEYCTL_UNLINK
    found_names = [n for n, k in found.items() if k]
    print(json.dumps({"found": found_names, "secret": buffer.raw[:size].decode()}))
"""


def host_keys(action: str, token: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", HOST_KEYS, action, token], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"the host's keyrings cannot be used here: {done.stderr.strip()}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


@ROOTS
def test_the_host_keyrings_are_neither_listed_nor_reachable(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    keys = host_keys("add", token)
    try:
        write_attack(pytester, KEYRINGS, root=root, token=token, **keys)
        result = run_attack(pytester)
        after = host_keys("check", token)
    finally:
        host_keys("remove", token)
    assert after == {"found": [f"{token}-secret", f"{token}-victim"], "secret": f"{token}-secret"}
    result.assert_outcomes(passed=1)


# --- 19. the cgroup tree is out of reach, and the limits hold, also with root=True ----------

CGROUPS = """
    import pytest

    import attacks
    from given import MEMORY, PIDS, ROOT, TOKEN


    @pytest.mark.isolated(root=ROOT, pids=PIDS, memory=MEMORY)
    def test_reach_the_cgroup_tree():
        attacks.reach_the_cgroup_tree(ROOT, TOKEN, PIDS, MEMORY)
"""


def cgroups_named(token: str) -> list[str]:
    """Every cgroup of the host (under /sys/fs/cgroup) whose name holds ``token``."""
    found = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(top, d) for d in dirs if token in d]
    return found


@ROOTS
def test_the_cgroup_tree_is_out_of_reach_and_the_limits_hold(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, CGROUPS, root=root, token=token, pids=16, memory=96 << 20)
    result = run_attack(pytester)
    made = cgroups_named(token)
    for path in made:
        os.rmdir(path)
    assert made == [], "the container made cgroups on the host"
    result.assert_outcomes(passed=1)


# --- 20. on a private network, what a root=True member can and cannot do -------------------

NETWORK_IMPOSTOR = """
    import pytest

    import attacks

    PORT = 9000


    def test_an_impostor_on_the_network(container_factory):
        victim = container_factory(hostname="victim", network="lab")
        impostor = container_factory(hostname="impostor", network="lab", root=True)
        client = container_factory(hostname="client", network="lab")
        own = victim.run(attacks.addresses)
        # It cannot reach the network's switch nor another member: its namespace holds
        # its own eth0 and lo, nothing else; the bridge and its ports are the holder's.
        assert impostor.run(attacks.links) == ["eth0", "lo"]
        for link in ("veth0", "veth1", "br0"):
            assert impostor.run(attacks.pull_a_cable, link) == "no such link here"
        # A member without root=True cannot even take an address.
        assert client.run(attacks.take_address, victim.address + "/24") == "EPERM"
        # What it can do: administer its own interface, another member's address included,
        # and answer for that address where the member itself does not (its cable out).
        assert impostor.run(attacks.take_address, victim.address + "/24") == "ok"
        victim.start(attacks.serve_as, "victim", PORT)
        impostor.start(attacks.serve_as, "impostor", PORT)
        victim.disconnect()
        assert client.run(attacks.ask, victim.address, PORT) == "impostor"
        # The victim's own interface is untouched; back on the network, it still has
        # its address, and the members that asked have the impostor in their ARP cache.
        assert victim.run(attacks.addresses) == own
"""


def test_a_root_member_can_answer_for_another_but_reaches_only_its_own_namespace(
    pytester: pytest.Pytester,
) -> None:
    """What docs/security.md says of private networks: a root=True member is root over its
    own network namespace only; among them, taking a member's address is within reach."""
    write_attack(pytester, NETWORK_IMPOSTOR)
    run_attack(pytester).assert_outcomes(passed=1)


# --- 21. a warning's filename makes the host read no file -------------------------------------

WARNING_FILENAME = """
    import linecache
    import warnings

    import pytest

    from given import ROOT, SECRET


    @pytest.mark.isolated(root=ROOT)
    def test_warn_naming_a_host_file():
        warnings.warn_explicit("named a host file", UserWarning, SECRET, 1)


    def test_the_host_never_read_it():  # on the host, in the same session
        assert SECRET not in linecache.cache
"""


@ROOTS
def test_a_warnings_filename_makes_the_host_read_no_file(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, root: bool
) -> None:
    secret = tmp_path_factory.mktemp("host-only") / "secret.txt"
    token = f"rootless-secret-{uuid.uuid4().hex}"
    secret.write_text(f"{token} first line\n{token} second line\n")
    write_attack(pytester, WARNING_FILENAME, root=root, secret=str(secret))
    result = run_attack(pytester, "-W", "default")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*named a host file*"])
    assert token not in result.stdout.str() + result.stderr.str()


# --- 22. a cache key names no file outside the cache directory --------------------------------

CACHE_KEYS = """
    import pytest

    import attacks
    from given import FORGED, KEYS, ROOT


    @pytest.mark.isolated(root=ROOT)
    @pytest.mark.parametrize("key", KEYS)
    def test_set_a_key_that_leaves_the_cache(request, key):
        with pytest.raises(ValueError, match="cache"):
            request.config.cache.set(key, "overwritten")


    @pytest.mark.isolated(root=ROOT)
    @pytest.mark.parametrize("key", FORGED)
    def test_forge_a_cache_frame(key):
        attacks.send_frame({"kind": "cache", "values": {key: "overwritten"}})
"""

# The host's pytest joins keys as pytest 8 does, without a check of its own (9.2 refuses
# some keys itself): the plugin's check must hold for every supported pytest.
PYTEST_8_CACHE = """
    from pathlib import Path

    import pytest
    from _pytest.cacheprovider import Cache

    pytest.register_assert_rewrite("attacks")


    def _getvaluepath(self, key):
        return self._cachedir.joinpath(self._CACHE_PREFIX_VALUES, Path(key))


    Cache._getvaluepath = _getvaluepath
"""


@ROOTS
def test_a_cache_key_writes_no_file_outside_the_cache(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, root: bool
) -> None:
    outside = tmp_path_factory.mktemp("host-only")
    target = outside / "bashrc"
    target.write_text("original")
    values = pytester.path / ".pytest_cache" / "v"
    values.mkdir(parents=True)
    (values / "link").symlink_to(outside)  # a key through it resolves outside
    relative = os.path.relpath(target, values)
    keys = [str(target), relative, "sub/../" + relative]
    write_attack(pytester, CACHE_KEYS, root=root, keys=keys, forged=[*keys, "link/bashrc"])
    pytester.makeconftest(PYTEST_8_CACHE)
    result = run_attack(pytester)
    assert target.read_text() == "original"
    assert sorted(p.name for p in outside.iterdir()) == ["bashrc"]
    result.assert_outcomes(passed=3, failed=4)
    result.stdout.fnmatch_lines(["*malformed data*a cache key*"])


# --- 23. forged coverage data renders no host file --------------------------------------------

COVERAGE = """
    import pytest

    import attacks
    from given import NOTES, ROOT, SECRET


    @pytest.mark.isolated(root=ROOT)
    def test_forge_coverage():
        import pkg

        pkg.used()
        forged = {SECRET: [1, 2], NOTES: [1]}
        attacks.send_frame({"kind": "coverage", "arcs": False, "contexts": {"": forged}})
"""


@ROOTS
@pytest.mark.parametrize("source", ["--cov", "--cov=pkg"])
def test_forged_coverage_data_renders_no_host_file(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, root: bool, source: str
) -> None:
    secret = tmp_path_factory.mktemp("host-only") / "secret.py"
    token = f"rootless_secret_{uuid.uuid4().hex}"
    secret.write_text(f"{token} = 1\n{token}_2 = 2\n")
    notes = pytester.path / "notes.py"  # the container sees it, outside the source
    notes.write_text(f"{token}_notes = 1\n")
    pytester.mkpydir("pkg").joinpath("__init__.py").write_text("def used():\n    return 1\n")
    write_attack(pytester, COVERAGE, root=root, secret=str(secret), notes=str(notes))
    result = run_attack(pytester, source, "--cov-report=html", "--cov-report=term")
    result.assert_outcomes(passed=1)
    html = pytester.path / "htmlcov"
    rendered = "".join(p.read_text(errors="replace") for p in html.rglob("*.html"))
    assert ">used</span>" in rendered  # the project's own file is there
    assert f"{token}_2" not in rendered  # never a file the container did not see
    assert str(secret) not in result.stdout.str()
    if source == "--cov=pkg":  # nor one outside the run's source
        assert token not in rendered
        assert "notes.py" not in result.stdout.str()


# --- 24. a result full of hash collisions is refused within the call's timeout ----------------

COLLISIONS = """
    import time

    import pytest

    import attacks
    from given import ROOT


    def colliding(n):
        return {1 + k * attacks.HASH_MODULUS for k in range(n)}


    @pytest.mark.container(root=ROOT, timeout=2)
    def test_colliding_set(container):
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            container.run(attacks.forge_colliding_set, 30_000)
        print(type(raised.value).__name__, raised.value)
        assert time.monotonic() - started < 3, raised.value


    @pytest.mark.container(root=ROOT, timeout=2)
    def test_large_results_still_come_back(container):
        assert container.run(list, range(100_000)) == list(range(100_000))
        strings = {f"s{i}" for i in range(10_000)}
        assert container.run(set, strings) == strings
        assert len(container.run(colliding, 8)) == 8  # a few collisions are data
"""


@ROOTS
def test_a_result_full_of_hash_collisions_is_refused_within_the_timeout(
    pytester: pytest.Pytester, root: bool
) -> None:
    write_attack(pytester, COLLISIONS, root=root)
    result = run_attack(pytester, "-s")
    result.assert_outcomes(passed=2)


# --- 25. a forged "done" frame does not keep the container alive ------------------------------

FORGED_DONE = """
    import time

    import pytest

    import attacks
    from given import ROOT, TOKEN


    @pytest.mark.isolated(root=ROOT)
    def test_outlive_the_test():
        attacks.outlive_the_test(TOKEN)


    def test_next(capfd):  # on the host: nothing of the last container writes here
        time.sleep(2)
        print("next test's own output")
"""


@ROOTS
def test_a_forged_done_frame_does_not_keep_the_container_alive(
    pytester: pytest.Pytester, root: bool
) -> None:
    token = f"rootless-acceptance-{uuid.uuid4().hex}"
    write_attack(pytester, FORGED_DONE, root=root, token=token)
    with killed_afterwards(token):
        result = run_attack(pytester, "-rA")
        assert gone(token) == {}
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*next test's own output*"])
    assert token not in result.stdout.str() + result.stderr.str()


# --- 26. junit attribute names inject no element ----------------------------------------------

JUNIT_NAMES = """
    import pytest

    from given import ROOT


    @pytest.mark.isolated(root=ROOT)
    def test_inject(record_xml_attribute):
        record_xml_attribute('a="1"><injected/><x y', "v")


    @pytest.mark.isolated(root=ROOT)
    def test_plain(record_xml_attribute):
        record_xml_attribute("ok-name.1", "v")
"""


@ROOTS
def test_junit_attribute_names_inject_no_element(pytester: pytest.Pytester, root: bool) -> None:
    import xml.etree.ElementTree as ET

    write_attack(pytester, JUNIT_NAMES, root=root)
    result = run_attack(pytester, "--junitxml=out.xml", "-o", "junit_family=xunit1")
    result.assert_outcomes(passed=2, errors=1)  # the frame comes after the teardown report
    result.stdout.fnmatch_lines(["*malformed data*not an XML name*"])
    tree = ET.parse(pytester.path / "out.xml")  # well-formed
    assert tree.find(".//injected") is None
    cases = {case.get("name"): case for case in tree.iter("testcase")}
    assert cases["test_plain"].get("ok-name.1") == "v"


# --- 27. symlinks left in tmp_path make pytest's later cleanup touch nothing else --------------

TMP_SYMLINKS = """
    import os

    import pytest

    from given import ROOT, TARGET


    @pytest.mark.isolated(root=ROOT)
    def test_leave_symlinks(tmp_path):
        os.symlink(TARGET, tmp_path / "link")
        locked = tmp_path / "locked"
        locked.mkdir()
        os.symlink(TARGET, locked / "link")
        os.symlink("../link", locked / "relative")
        os.chmod(locked, 0o500)  # pytest's rm_rf fails to unlink in here, then chmods
        assert False, "keep my tmp_path"
"""


@ROOTS
def test_symlinks_left_in_tmp_path_make_the_later_cleanup_touch_nothing_else(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, root: bool
) -> None:
    from _pytest.pathlib import rm_rf

    target = tmp_path_factory.mktemp("host-only") / "private.txt"
    target.write_text("the user's own file")
    target.chmod(0o400)
    write_attack(pytester, TMP_SYMLINKS, root=root, target=str(target))
    result = run_inner(pytester, "-v")
    result.assert_outcomes(failed=1)
    (basetemp,) = pytester.path.glob("runpytest-*")
    kept = basetemp / "test_leave_symlinks0"  # the test's tmp_path, kept: the test failed
    assert [p for p in kept.rglob("*") if p.is_symlink()] == []
    assert sorted(str(p.relative_to(kept)) for p in kept.rglob("*")) == [
        "link",
        "locked",
        "locked/link",
        "locked/relative",
    ]
    assert (kept / "link").read_text() == ""  # an empty file in its place
    rm_rf(basetemp)  # as pytest removes an old basetemp in a later session
    assert not basetemp.exists()
    assert stat.S_IMODE(target.stat().st_mode) == 0o400
