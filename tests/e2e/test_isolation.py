"""What a test inside a container can and cannot reach: read-only host paths, a private
/tmp, its own network namespace, its own PID namespace, no way to undo read-only mounts."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from .. import procscan

TIMEOUT = 120

READ_ONLY = """
    import errno
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent


    @pytest.mark.isolated
    def test_overwrite_a_project_file():
        with pytest.raises(OSError) as excinfo:
            (HERE / "precious.txt").write_text("overwritten")
        assert excinfo.value.errno == errno.EROFS
        assert (HERE / "precious.txt").read_text() == "original"


    @pytest.mark.isolated
    def test_create_a_file_in_the_project():
        with pytest.raises(OSError) as excinfo:
            (HERE / "new.txt").write_text("new")
        assert excinfo.value.errno == errno.EROFS
"""


def test_write_to_a_read_only_path_fails_and_the_host_is_unchanged(
    pytester: pytest.Pytester,
) -> None:
    precious = pytester.path / "precious.txt"
    precious.write_text("original")
    pytester.makepyfile(READ_ONLY)
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*::test_overwrite_a_project_file PASSED*",
            "*::test_create_a_file_in_the_project PASSED*",
        ]
    )
    assert precious.read_text() == "original"
    assert not (pytester.path / "new.txt").exists()


PRIVATE_TMP = """
    import os

    import pytest


    @pytest.mark.isolated
    def test_private_tmp():
        assert not os.path.exists({host_marker!r})
        with open({inside!r}, "w") as f:
            f.write("written inside")
        with open({inside!r}) as f:
            assert f.read() == "written inside"
"""


def test_tmp_inside_is_private(pytester: pytest.Pytester) -> None:
    inside = Path("/tmp") / f"rootless-e2e-inside-{uuid.uuid4().hex}"
    host_marker = Path("/tmp") / f"rootless-e2e-host-{uuid.uuid4().hex}"
    host_marker.write_text("on the host")
    try:
        pytester.makepyfile(PRIVATE_TMP.format(inside=str(inside), host_marker=str(host_marker)))
        result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*::test_private_tmp PASSED*"])
        assert not inside.exists()
    finally:
        host_marker.unlink()
        inside.unlink(missing_ok=True)


NETWORK = """
    import socket

    import pytest


    @pytest.mark.isolated({marker})
    def test_interfaces():
        assert socket.if_nameindex() == {expected!r}
"""


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        pytest.param("", [(1, "lo")], id="none"),
        pytest.param('network="none"', [(1, "lo")], id="none-explicit"),
        pytest.param('network="host"', socket.if_nameindex(), id="host"),
    ],
)
def test_network_interfaces(
    pytester: pytest.Pytester, marker: str, expected: list[tuple[int, str]]
) -> None:
    pytester.makepyfile(NETWORK.format(marker=marker, expected=expected))
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*::test_interfaces PASSED*"])


PROC_CONFTEST = """
    import os

    import pytest


    @pytest.fixture(scope="session")
    def host_pytest_pid():
        # A session fixture is made on the host, by the pytest process itself.
        return os.getpid()
"""

PROC = """
    import os
    import subprocess
    import sys

    import pytest

    from procscan import pids


    @pytest.mark.isolated
    def test_cannot_see_pytest(host_pytest_pid):
        assert host_pytest_pid not in (1, 2)
        assert os.getpid() == 2
        assert os.getppid() == 1
        # init names itself; the test process has pytest's name (the program it ran)
        assert open("/proc/1/comm").read() == "rootless-init\\n"
        own = os.path.basename(sys.executable)[:15]
        assert open("/proc/self/comm").read() == own + "\\n"
        assert not os.path.exists(f"/proc/{host_pytest_pid}")
        with pytest.raises(ProcessLookupError):
            os.kill(host_pytest_pid, 0)
        assert pids() == [1, 2]
        child = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        try:
            assert pids() == [1, 2, child.pid]
        finally:
            child.stdin.close()
            child.wait()
        assert pids() == [1, 2]
"""


@pytest.mark.parametrize("how", ["prepared", "--rootless-no-prepare"])
def test_proc_shows_only_the_container(pytester: pytest.Pytester, how: str) -> None:
    """Prepared (forked from the zygote) or not (forked from init, a copy of pytest)."""
    pytester.makeconftest(PROC_CONFTEST)
    pytester.makepyfile(PROC, procscan=procscan.source())
    extra = () if how == "prepared" else (how,)
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", *extra, timeout=TIMEOUT)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*::test_cannot_see_pytest PASSED*"])


REMOUNT = """
    import ctypes
    import errno
    import os
    from pathlib import Path

    import pytest

    MS_REMOUNT = 32
    MS_BIND = 4096

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (
        ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p
    )
    libc.mount.restype = ctypes.c_int


    def remount_read_write(path):
        ctypes.set_errno(0)
        rc = libc.mount(None, os.fsencode(path), None, MS_REMOUNT | MS_BIND, None)
        return rc, errno.errorcode.get(ctypes.get_errno())


    @pytest.mark.isolated(root={root})
    @pytest.mark.parametrize("path", ["/usr", str(Path(__file__).parent)])
    def test_remount(path):
        assert os.getuid() == {uid}
        assert os.statvfs(path).f_flag & os.ST_RDONLY
        assert remount_read_write(path) == (-1, "EPERM")
        assert os.statvfs(path).f_flag & os.ST_RDONLY
"""


@pytest.mark.parametrize("root", [True, False], ids=["root", "not-root"])
def test_read_only_mounts_cannot_be_made_writable(pytester: pytest.Pytester, root: bool) -> None:
    uid = 0 if root else os.getuid()
    pytester.makepyfile(REMOUNT.format(root=root, uid=uid))
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*::test_remount?/usr? PASSED*",
            "*::test_remount?/* PASSED*",
        ]
    )
