"""The container fixture: a live container a test drives (README.md, "A live container a
test can drive")."""

from __future__ import annotations

import os

import pytest

from .. import procscan

BODY = """
import errno, os, socket, subprocess, time
from pathlib import Path
import pytest
import pytest_rootless
from procscan import pids


def test_run_ships_closures_and_returns_data(container):
    base = 41
    assert container.run(lambda: base + 1) == 42
    value = container.run(lambda: (1, {2}, frozenset({3}), b"x", Path("/a"), {(0, 1): None}))
    assert value == (1, {2}, frozenset({3}), b"x", Path("/a"), {(0, 1): None})
    assert container.run(os.getppid) == 1  # a process of the container, child of its init


def test_state_persists_between_calls(container):
    container.write_text("/tmp/note.txt", "kept")
    assert container.read_text("/tmp/note.txt") == "kept"
    assert container.read_bytes("/tmp/note.txt") == b"kept"
    pid = container.start(time.sleep, 60)
    assert pid.alive
    assert len(container.run(pids)) >= 3
    pid.kill()


def test_exceptions_come_back_as_their_type(container):
    with pytest.raises(OSError) as exc:
        container.run(os.remove, "/usr/bin/env")
    assert exc.value.errno == errno.EROFS
    with pytest.raises(FileNotFoundError):
        container.run(open, "/nonexistent")

    class Custom(Exception):
        pass

    def fail():
        raise Custom("mine")

    with pytest.raises(pytest_rootless.RemoteError, match="mine") as remote:
        container.run(fail)
    assert remote.value.type_name.endswith("Custom")
    with pytest.raises(TypeError, match="cannot return"):
        container.run(object)


def test_an_assertion_inside_shows_its_rewritten_message(container):
    def check():
        items = [1, 2]
        assert items == [1, 3]

    with pytest.raises(AssertionError, match=r"\\[1, 2\\] == \\[1, 3\\]"):
        container.run(check)


def test_exec(container):
    done = container.exec(["sh", "-c", "echo hi; hostname; cat"], input="in")
    assert done.stdout.split() == ["hi", "sandbox", "in"]
    assert container.exec(["sh", "-c", "exit 3"]).returncode == 3
    with pytest.raises(subprocess.CalledProcessError):
        container.exec(["false"], check=True)
    with pytest.raises(FileNotFoundError):
        container.exec(["no-such-program"])
    with pytest.raises(subprocess.TimeoutExpired):
        container.exec(["sleep", "30"], timeout=0.5)
    done = container.exec(["sh", "-c", "echo $X; pwd"], env={"X": "1", "PATH": "/usr/bin:/bin"},
                          cwd="/tmp")
    assert done.stdout.split() == ["1", "/tmp"]


def test_a_crash_fails_that_call_only(container):
    import ctypes
    with pytest.raises(pytest_rootless.RemoteError, match="SIGSEGV"):
        container.run(ctypes.string_at, 0)
    assert container.run(lambda: "still up") == "still up"


def test_background_process(container):
    process = container.start(lambda: sum(range(10)))
    assert process.wait(10) == 45
    slow = container.start(time.sleep, 60)
    with pytest.raises(TimeoutError):
        slow.wait(0.2)
    slow.kill()
    with pytest.raises(pytest_rootless.RemoteError, match="SIGKILL"):
        slow.wait(10)


@pytest.mark.container(hostname="web", env={"ROLE": "server"})
def test_marker_options(container):
    assert container.hostname == "web"
    assert container.run(socket.gethostname) == "web"
    assert container.run(lambda: os.environ.get("ROLE")) == "server"


def test_factory_makes_independent_containers(container_factory):
    a = container_factory(hostname="a")
    b = container_factory(hostname="b")
    a.write_text("/tmp/only-a", "x")
    assert (a.run(socket.gethostname), b.run(socket.gethostname)) == ("a", "b")
    assert b.run(os.path.exists, "/tmp/only-a") is False


def test_close_kills_everything(container):
    container.start(time.sleep, 60)
    init = container.pid
    container.close()
    container.close()  # idempotent
    assert not os.path.exists(f"/proc/{init}")
    with pytest.raises(RuntimeError, match="closed"):
        container.run(lambda: 1)


def test_run_isolated_without_pytest_machinery():
    assert pytest_rootless.run_isolated(os.getppid) == 1
    assert pytest_rootless.run_isolated(socket.gethostname, hostname="one-off") == "one-off"
"""


def test_container_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BODY, procscan=procscan.source())
    result = pytester.runpytest_subprocess("-p", "rootless", "-v")
    result.assert_outcomes(passed=BODY.count("\ndef test_"))


def test_no_pickle_comes_back(pytester: pytest.Pytester) -> None:
    """A function returning an object whose unpickling would run code: refused as data."""
    marker = pytester.path / "pwned"
    pytester.makepyfile(
        f"""
        import os
        import pytest

        class Evil:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))

        def test_evil(container):
            with pytest.raises(TypeError, match="cannot return"):
                container.run(Evil)
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=1)
    assert not os.path.exists(marker)


NESTED = """
import os, socket, subprocess, sys, time
import pytest
from procscan import pids

def settled_pids():
    # a call process that already answered may not be reaped by init yet
    for _ in range(200):
        listed = pids()
        if len(listed) <= 2:
            break
        time.sleep(0.01)
    return listed

@pytest.mark.isolated
def test_container_inside_an_isolated_test(container):
    assert container.run(os.getppid) == 1
    assert container.run(socket.gethostname) == "sandbox"
    listed = container.run(settled_pids)
    assert listed[0] == 1 and len(listed) == 2  # its own PID namespace inside ours

@pytest.mark.isolated
def test_isolated_tests_inside_an_isolated_test(tmp_path):
    (tmp_path / "test_inner.py").write_text(
        "import os, pytest\\n"
        "@pytest.mark.isolated\\n"
        "def test_inner():\\n"
        "    assert os.getppid() == 1\\n"
    )
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "rootless", "--rootless-require", "-q",
         "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert inner.returncode == 0, inner.stdout + inner.stderr
"""


def test_containers_nest(pytester: pytest.Pytester) -> None:
    """Rootless users can make containers inside containers. A run as real root cannot:
    a uid 0 without CAP_SETFCAP may not map uid 0 into a new user namespace (Linux
    5.12+), and the nested tests say so instead of running without isolation."""
    pytester.makepyfile(NESTED, procscan=procscan.source())
    result = pytester.runpytest_subprocess("-p", "rootless", "-rs")
    if os.geteuid() == 0:
        result.assert_outcomes(skipped=1, failed=1)
        result.stdout.fnmatch_lines(["*uid 0 without CAP_SETFCAP*"])
    else:
        result.assert_outcomes(passed=2)


def test_changes_and_per_call_timeout(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, time
        from pathlib import Path
        import pytest

        def test_changes(container):
            assert container.changes() == {}
            container.write_text("/tmp/new.txt", "x")
            container.run(lambda: os.makedirs(os.path.expanduser("~/.cache/app")))
            assert container.changes() == {
                os.path.join(container.run(lambda: os.environ["HOME"]), ".cache"): "added",
                os.path.join(container.run(lambda: os.environ["HOME"]), ".cache", "app"): "added",
                "/tmp/new.txt": "added",
            }

        def test_modified_and_deleted(container_factory):
            box = container_factory()
            box.write_text("/tmp/a", "1")
            box.write_text("/tmp/b", "1")
            before = box.changes()
            assert before == {"/tmp/a": "added", "/tmp/b": "added"}

        @pytest.mark.container(timeout=0.5)
        def test_timeout_bounds_each_call(container):
            assert container.run(lambda: "quick") == "quick"
            with pytest.raises(TimeoutError, match="timeout=0.5s"):
                container.run(time.sleep, 30)
            assert container.run(lambda: "still up") == "still up"
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("page", "heading", "tests"),
    [
        ("README.md", "## The `container` fixture", 1),
        ("docs/container-fixture.md", "## A live container a test can drive", 3),
    ],
)
def test_the_documented_example_runs(
    pytester: pytest.Pytester, page: str, heading: str, tests: int
) -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / page).read_text()
    section = text.split(heading + "\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    pytester.makepyfile(test_readme=code.group(1))
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=tests)


def test_many_calls_in_one_container(pytester: pytest.Pytester) -> None:
    """Init reports every ended process to the host; the host must keep reading those
    reports, or init blocks on a full socket after a few hundred calls."""
    pytester.makepyfile(
        """
        def test_many(container):
            assert sum(container.run(lambda: 1) for _ in range(600)) == 600
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", timeout=120)
    result.assert_outcomes(passed=1)


ROBUST = """
import os, subprocess, time
from concurrent.futures import ThreadPoolExecutor
import pytest
import pytest_rootless


def test_a_child_left_behind_does_not_hold_the_call(container):
    started = time.monotonic()
    container.run(os.system, "sleep 30 &")
    container.run(lambda: subprocess.Popen(["sleep", "30"], close_fds=False).pid)
    assert time.monotonic() - started < 10


def test_hundreds_of_killed_processes(container):
    processes = [container.start(time.sleep, 1000) for _ in range(500)]
    for process in processes:
        process.kill()
    assert container.run(int) == 0


def test_first_used_in_a_thread_that_ends(container):
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(container.run, lambda: 42).result() == 42
    assert container.run(lambda: 43) == 43
    assert os.path.exists(f"/proc/{container.pid}")


def test_waiting_twice_and_after_close(container):
    process = container.start(os._exit, 3)
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(pytest_rootless.RemoteError, match="status 3"):
            process.wait(10)
        assert time.monotonic() - started < 5
    slow = container.start(time.sleep, 30)
    container.close()
    with pytest.raises(pytest_rootless.RemoteError):
        slow.wait(5)


def test_a_result_too_large_is_a_clear_error(container):
    with pytest.raises(TypeError, match="more than the"):
        container.run(lambda: b"x" * (60 << 20))
    assert len(container.run(lambda: b"x" * (10 << 20))) == 10 << 20
"""


def test_robust_live_containers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ROBUST)
    # faulthandler_timeout gives pytest a watchdog thread: containers then start through
    # the single-threaded relay, which the thread test exercises.
    result = pytester.runpytest_subprocess(
        "-p", "rootless", "-o", "faulthandler_timeout=60", timeout=180
    )
    result.assert_outcomes(passed=ROBUST.count("\ndef test_"))
