"""``--rootless-fallback=landlock`` on hosts that refuse user namespaces, simulated for real:
the inner pytest runs under a seccomp filter like Docker's default one
(:mod:`tests.e2e.refusing_host`), or in bubblewrap with ``--disable-userns``
(a user.max_user_namespaces limit reached). Each attack is made from the inner test; the
outer test checks the host afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).with_name("refusing_host.py")

ATTACKS = """
import os, signal, socket, subprocess, tempfile, time
import pytest

pytestmark = pytest.mark.isolated


def test_writes_only_to_tmp_path_tmpdir_and_home(tmp_path):
    (tmp_path / "mine").write_text("x")
    for path in (os.environ["MARK_TMP"], "written-by-test", "/usr/rootless-written",
                 "/etc/rootless-written"):
        with pytest.raises(PermissionError):
            open(path, "w")
    with pytest.raises(PermissionError):
        os.mkdir(os.environ["MARK_TMP"] + ".d")
    assert os.system("echo quiet > /dev/null") == 0


def test_private_tmpdir_and_fresh_home():
    tmpdir, home = os.environ["TMPDIR"], os.environ["HOME"]
    assert tempfile.gettempdir() == tmpdir != "/tmp"
    assert home != os.environ["HOST_HOME"]
    assert os.listdir(home) == [] and os.listdir(tmpdir) == []
    fd, name = tempfile.mkstemp()
    os.close(fd)
    open(os.path.join(home, ".rc"), "w").write("x")
    print(f"SCRATCH={tmpdir} {home}")


def test_cannot_signal_nor_ptrace_a_host_process():
    pid = int(os.environ["HOST_PID"])
    with pytest.raises(PermissionError):
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(PermissionError):
        open(f"/proc/{pid}/environ").read()
    with pytest.raises(PermissionError):
        os.kill(os.getppid(), signal.SIGKILL)  # the keeper


def test_cannot_reach_a_host_abstract_socket():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        with pytest.raises(PermissionError):
            s.connect("\\0" + os.environ["ABSTRACT"])


def test_starts_a_daemon():
    out = subprocess.run(["setsid", "sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    pid = int(out)
    os.kill(pid, 0)  # its own processes it may signal
    print(f"DAEMON={pid}")


def test_crashes():
    os.kill(os.getpid(), signal.SIGSEGV)


def test_after_the_crash():
    pass


@pytest.mark.isolated(timeout=1)
def test_times_out():
    time.sleep(30)


@pytest.mark.isolated(hostname="box")
def test_needs_a_uts_namespace():
    raise AssertionError("ran without its namespace")


def test_needs_a_container(container):
    raise AssertionError("ran without its namespaces")
"""


@pytest.fixture
def host() -> Iterator[dict[str, str]]:
    """A host process, a host abstract socket and a name in the host's /tmp, for the
    inner tests to attack (through the environment)."""
    token = uuid.uuid4().hex
    sleeper = subprocess.Popen(["sleep", "120"])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"\0rootless-e2e-{token}")
    listener.listen()
    mark = f"/tmp/rootless-landlock-{token}"
    try:
        yield {
            "HOST_PID": str(sleeper.pid),
            "ABSTRACT": f"rootless-e2e-{token}",
            "MARK_TMP": mark,
            "HOST_HOME": os.environ.get("HOME", ""),
        }
        assert sleeper.poll() is None, "the host process was killed from a test"
        assert not os.path.exists(mark)
        assert not os.path.exists(mark + ".d")
    finally:
        sleeper.kill()
        sleeper.wait()
        listener.close()


def run_refused(pytester: pytest.Pytester, env: dict[str, str], *args: str) -> pytest.RunResult:
    """The inner pytest under the Docker-like seccomp filter."""
    for key, value in env.items():
        pytester._monkeypatch.setenv(key, value)
    inner = [sys.executable, "-m", "pytest", "-p", "rootless", "-p", "no:cacheprovider", *args]
    return pytester.run(sys.executable, str(LAUNCHER), *inner, timeout=300)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_landlock_tier_under_a_docker_like_filter(
    pytester: pytest.Pytester, host: dict[str, str]
) -> None:
    pytester.makepyfile(test_attacks=ATTACKS)
    result = run_refused(pytester, host, "--rootless-fallback=landlock", "-s", "-rfEs")
    out = result.stdout.str()
    result.assert_outcomes(passed=6, failed=2, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "rootless: isolation: landlock ABI * (user namespaces refused by seccomp): no PID,"
            " network, UTS or IPC namespace*",
            "*rootless: the test process was killed by signal 11 (SIGSEGV*",
            "*rootless: the container exceeded timeout=1s and was stopped*",
            "8 isolated test(s) ran in the landlock tier, 2 skipped (they need a namespace)*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "FAILED *test_crashes*",
            "FAILED *test_times_out*",
            "SKIPPED*hostname='box' needs a UTS namespace, and user namespaces refused by seccomp*",
            "SKIPPED*the container fixture needs user, mount, PID, network, UTS and IPC*",
        ],
        consecutive=False,
    )
    assert "ran without its" not in out
    assert not (pytester.path / "written-by-test").exists()
    daemon = int(out.split("DAEMON=", 1)[1].split()[0])
    assert not _alive(daemon), "a daemon outlived its test"
    for scratch in out.split("SCRATCH=", 1)[1].split("\n", 1)[0].split():
        assert not os.path.exists(scratch)


def test_without_the_option_the_same_host_still_skips(
    pytester: pytest.Pytester, host: dict[str, str]
) -> None:
    pytester.makepyfile(test_attacks=ATTACKS)
    result = run_refused(pytester, host, "-rs")
    result.assert_outcomes(skipped=10)
    result.stdout.fnmatch_lines(
        [
            "*SKIPPED*rootless: creating a user namespace was refused (EPERM): a seccomp filter"
            "*; fix: *",
        ]
    )
    assert "isolation: landlock" not in result.stdout.str()


def test_the_ini_value_turns_it_on(pytester: pytest.Pytester, host: dict[str, str]) -> None:
    pytester.makeini("[pytest]\nrootless_fallback = landlock\n")
    pytester.makepyfile(
        """
        import os, pytest

        @pytest.mark.isolated
        def test_home_is_fresh():
            assert os.listdir(os.environ["HOME"]) == []
        """
    )
    result = run_refused(pytester, host)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["rootless: isolation: landlock ABI *"])


def test_env_allow_and_the_memory_ceiling_hold_in_the_tier(
    pytester: pytest.Pytester, host: dict[str, str]
) -> None:
    """The tier filters the environment as a container does, and sets the default memory
    ceiling (RLIMIT_DATA) where the test sets no memory limit."""
    pytester.makeini("[pytest]\nrootless_fallback = landlock\nrootless_default_memory = 3G\n")
    pytester.makepyfile(
        """
        import os, resource, pytest

        @pytest.mark.isolated(env_allow=["KEEP_*"])
        def test_only_the_listed_variables():
            assert os.environ.get("KEEP_ME") == "yes"
            assert "DROP_ME" not in os.environ
            assert "PATH" not in os.environ

        @pytest.mark.isolated
        def test_the_ceiling():
            soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
            # how much the process may grow, over what it held when the limit was set
            assert soft == hard and 3 << 30 <= soft < 4 << 30
        """
    )
    result = run_refused(pytester, {**host, "KEEP_ME": "yes", "DROP_ME": "no"})
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("args", "ini", "where"),
    [
        (["--rootless-fallback=chroot"], "", "--rootless-fallback='chroot'"),
        ([], "rootless_fallback = yes\n", "ini rootless_fallback='yes'"),
    ],
)
def test_a_bad_value_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], ini: str, where: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "rootless", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{where} is invalid: accepted 'none' or 'landlock'*"])


def test_landlock_tier_in_bubblewrap_without_user_namespaces(
    pytester: pytest.Pytester, host: dict[str, str]
) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("needs bubblewrap (bwrap) for --disable-userns")
    pytester.makepyfile(
        """
        import os, pytest

        @pytest.mark.isolated
        def test_confined(tmp_path):
            (tmp_path / "ok").write_text("x")
            with pytest.raises(PermissionError):
                open(os.environ["MARK_TMP"], "w")
        """
    )
    for key, value in host.items():
        pytester._monkeypatch.setenv(key, value)
    inner = [sys.executable, "-m", "pytest", "-p", "rootless", "-p", "no:cacheprovider"]
    result = pytester.run(
        bwrap, "--unshare-user", "--disable-userns", "--dev-bind", "/", "/",
        *inner, "--rootless-fallback=landlock", timeout=300,
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        # bwrap caps user.max_user_namespaces of the namespace above the sandbox's: the
        # kernel answers ENOSPC, as on a host whose limit is reached
        ["rootless: isolation: landlock ABI * (the user-namespace limit is reached (ENOSPC)): *"]
    )


def test_the_keeper_ends_the_test_when_pytest_is_killed(pytester: pytest.Pytester) -> None:
    """SIGKILL to pytest: the keeper's parent-death signal ends the test and its daemon."""
    pytester.makepyfile(
        """
        import subprocess, time, pytest

        @pytest.mark.isolated
        def test_hangs(tmp_path):
            out = subprocess.run(
                ["setsid", "sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
                capture_output=True, text=True, check=True).stdout
            print(f"DAEMON={out.strip()}", flush=True)
            time.sleep(300)
        """
    )
    inner = [sys.executable, "-m", "pytest", "-p", "rootless", "-p", "no:cacheprovider", "-s"]
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER), *inner, "--rootless-fallback=landlock"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "DAEMON=" in line:
                daemon = int(line.split("DAEMON=", 1)[1])
                break
        else:
            pytest.fail("the inner test did not start its daemon")
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(daemon) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(daemon), "a daemon outlived pytest's death"
