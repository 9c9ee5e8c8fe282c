"""pytest-rootless with the plugins a suite already uses: pytest-xdist, pytest-cov and
coverage.py, pytest-timeout and faulthandler_timeout, junitxml (the last is in the
parity harness, test_parity.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

TIMEOUT = 180

# --- pytest-xdist -----------------------------------------------------------------------------

SAME_PORT = """
import socket, time

def test_listens(worker_id):
    server = socket.socket()
    server.bind(("127.0.0.1", 8765))  # SO_REUSEADDR off: a second bind is EADDRINUSE
    server.listen()
    start = time.time()
    time.sleep(1.5)  # long enough that the two workers hold the port at the same time
    print(f"HELD {worker_id} {start} {time.time()}")
    server.close()
"""


def _held(result: pytest.RunResult) -> dict[str, tuple[float, float]]:
    found = re.findall(r"HELD (gw\d) ([\d.]+) ([\d.]+)", result.stdout.str())
    return {worker: (float(start), float(end)) for worker, start, end in found}


def test_xdist_workers_each_have_their_own_loopback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SAME_PORT)
    # --dist=each: every worker runs the test, both at once
    args = ("-n", "2", "--dist=each", "-p", "rootless", "-rA")
    isolated = pytester.runpytest_subprocess(*args, "--rootless", timeout=TIMEOUT)
    isolated.assert_outcomes(passed=2)
    held = _held(isolated)
    assert held.keys() == {"gw0", "gw1"}, isolated.stdout.str()
    (start0, end0), (start1, end1) = held["gw0"], held["gw1"]
    assert start0 < end1, f"the two tests did not overlap: {held}"
    assert start1 < end0, f"the two tests did not overlap: {held}"
    # the control: on the host's loopback the second bind fails
    plain = pytester.runpytest_subprocess(*args, timeout=TIMEOUT)
    plain.assert_outcomes(passed=1, failed=1)
    plain.stdout.fnmatch_lines(["*Address already in use*"])


CRASHES = """
import os, signal
import pytest

def test_segfault():
    import ctypes
    ctypes.string_at(0)

def test_killed():
    os.kill(os.getpid(), signal.SIGKILL)

def test_exit():
    os._exit(3)

@pytest.mark.parametrize("n", range(4))
def test_fine(n):
    pass
"""


def test_xdist_crashes_fail_only_their_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CRASHES)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "rootless", "--rootless", timeout=TIMEOUT
    )
    result.assert_outcomes(passed=4, failed=3)
    out = result.stdout.str()
    assert "crashed" not in out, out  # no worker was lost
    assert "replacing" not in out, out
    result.stdout.fnmatch_lines_random(
        [
            "*_ test_segfault _*",
            "rootless: the test process was killed by signal 11 (SIGSEGV*) during call.",
            "*_ test_killed _*",
            "rootless: the test process was killed by signal 9 (SIGKILL*) during call.",
            "*_ test_exit _*",
            "rootless: the test process exited with status 3 before reporting during call.",
        ]
    )


SUBTESTS_AND_WARNINGS = """
import warnings
import pytest

@pytest.fixture(scope="module")
def shared():
    warnings.warn("module-scoped warning", UserWarning)
    return 1

def test_warns(shared):
    warnings.warn("from the test", DeprecationWarning)

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert 0

def test_fails():
    assert {"a": 1} == {"a": 2}
"""


def test_xdist_reports_what_a_plain_xdist_run_reports(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUBTESTS_AND_WARNINGS)
    args = ("-n", "2", "-p", "rootless", "-rA", "-W", "default")
    plain = pytester.runpytest_subprocess(*args, timeout=TIMEOUT)
    isolated = pytester.runpytest_subprocess(*args, "--rootless", timeout=TIMEOUT)
    assert isolated.parseoutcomes() == plain.parseoutcomes()
    for result in (plain, isolated):
        result.stdout.fnmatch_lines_random(
            [
                "*UserWarning: module-scoped warning",
                "*DeprecationWarning: from the test",
                "E       AssertionError: assert {'a': 1} == {'a': 2}",
                "XFAIL *::test_xfail - known",
            ]
        )


# --- coverage ---------------------------------------------------------------------------------

MODULE = """
def inside(x):
    if x:
        return "inside"
    return "never"


def in_a_call():
    return "call"


def on_the_host():
    return "host"
"""

COVERED = """
import pytest
from pkg import mod

@pytest.mark.isolated
def test_isolated():
    assert mod.inside(1) == "inside"

def test_container(container):
    assert container.run(mod.in_a_call) == "call"

def test_host():
    assert mod.on_the_host() == "host"
"""

# Every line but the one no test runs (``return "never"``, line 5).
MISSING = r"pkg[/\\]mod\.py +\d+ +1 +\d+% +5$"


@pytest.fixture
def measured(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.mkpydir("pkg")
    pytester.path.joinpath("pkg", "mod.py").write_text(MODULE)
    pytester.makepyfile(test_covered=COVERED)
    return pytester


def _no_leftovers(pytester: pytest.Pytester) -> None:
    left = sorted(p.name for p in pytester.path.glob(".coverage.*"))
    assert left == [], f"data files left behind: {left}"


@pytest.mark.parametrize("branch", [[], ["--cov-branch"]], ids=["lines", "branches"])
def test_pytest_cov_counts_lines_run_in_containers(
    measured: pytest.Pytester, branch: list[str]
) -> None:
    result = measured.runpytest_subprocess(
        "-p", "rootless", "--cov=pkg", "--cov-report=term-missing", *branch, timeout=TIMEOUT
    )
    result.assert_outcomes(passed=3)
    pattern = MISSING if not branch else r"pkg[/\\]mod\.py +\d+ +1 +\d+ +1 +\d+% +5$"
    result.stdout.re_match_lines([pattern])
    _no_leftovers(measured)


def test_pytest_cov_with_xdist_counts_lines_run_in_containers(measured: pytest.Pytester) -> None:
    result = measured.runpytest_subprocess(
        "-n", "2", "-p", "rootless", "--cov=pkg", "--cov-report=term-missing", timeout=TIMEOUT
    )
    result.assert_outcomes(passed=3)
    result.stdout.re_match_lines([MISSING])
    _no_leftovers(measured)


CONTEXTS = """
import coverage
data = coverage.CoverageData()
data.read()
for path in sorted(data.measured_files()):
    if path.endswith("mod.py"):
        print(sorted(data.contexts_by_lineno(path).items()))
"""


def test_pytest_cov_test_contexts_name_isolated_tests(measured: pytest.Pytester) -> None:
    result = measured.runpytest_subprocess(
        "-p", "rootless", "--cov=pkg", "--cov-context=test", timeout=TIMEOUT
    )
    result.assert_outcomes(passed=3)
    shown = measured.run(sys.executable, "-c", CONTEXTS)
    # mod.inside's body ran in test_isolated's container, under its pytest-cov context
    assert "(3, ['test_covered.py::test_isolated|run'])" in shown.stdout.str(), shown.stdout


def test_coverage_run_counts_lines_run_in_containers(measured: pytest.Pytester) -> None:
    run = measured.run(
        sys.executable, "-m", "coverage", "run", "--source=pkg", "-m", "pytest", "-p", "rootless"
    )
    run.assert_outcomes(passed=3)
    _no_leftovers(measured)
    report = measured.run(sys.executable, "-m", "coverage", "report", "-m")
    report.stdout.re_match_lines([MISSING])


# --- timeouts ---------------------------------------------------------------------------------

SLOW = """
import time
import pytest

@pytest.mark.isolated
def test_slow():
    print("started")
    time.sleep(30)

@pytest.mark.isolated
def test_next():
    pass
"""


def test_pytest_timeout_fails_the_test_in_its_container(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SLOW)
    result = pytester.runpytest_subprocess("-p", "rootless", "--timeout=2", timeout=TIMEOUT)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "E       Failed: Timeout (>2.0s) from pytest-timeout.",
            "*Captured stdout call*",
            "started",
        ]
    )


def test_pytest_timeout_thread_method_ends_only_the_test(pytester: pytest.Pytester) -> None:
    # Plainly, the thread method ends the whole pytest process (os._exit); isolated, the
    # test process is what it ends, and the session goes on.
    pytester.makepyfile(SLOW)
    result = pytester.runpytest_subprocess(
        "-p", "rootless", "--timeout=2", "--timeout-method=thread", timeout=TIMEOUT
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*+ Timeout +*",  # pytest-timeout's dump of the test's stack
            "*Stack of MainThread*",
            "*in test_slow*",
            "*rootless: the test process exited with status 1 before reporting during call.",
        ]
    )


def test_faulthandler_timeout_dumps_the_tests_stack(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SLOW.replace("time.sleep(30)", "time.sleep(3)"))
    result = pytester.runpytest_subprocess(
        "-p", "rootless", "-o", "faulthandler_timeout=1", timeout=TIMEOUT
    )
    result.assert_outcomes(passed=2)
    result.stderr.fnmatch_lines(["Timeout (0:00:01)!", "*File *test_slow*"])


def test_the_plugins_own_timeout_still_wins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        SLOW.replace(
            "@pytest.mark.isolated\ndef test_slow",
            "@pytest.mark.isolated(timeout=1)\ndef test_slow",
        )
    )
    result = pytester.runpytest_subprocess(
        "-p", "rootless", "--timeout=20", "-o", "faulthandler_timeout=10", timeout=TIMEOUT
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*rootless: the container exceeded timeout=1s*"])


# --- debugging and selection ------------------------------------------------------------------

BREAKPOINT = """
import pytest

@pytest.mark.isolated
def test_stops():
    x = 41
    breakpoint()
    assert x + 1 == 42
"""


def test_breakpoint_reads_the_terminal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BREAKPOINT)
    result = pytester.run(
        sys.executable, "-m", "pytest", "-p", "rootless", stdin=b"p x + 100\nc\n", timeout=60
    )
    result.stdout.fnmatch_lines(["*PDB set_trace*", "*(Pdb) 141", "*PDB continue*"])
    result.assert_outcomes(passed=1)


def test_breakpoint_without_a_terminal_ends_as_it_would_plainly(pytester: pytest.Pytester) -> None:
    # pdb reads end-of-file and quits: BdbQuit fails the test, as without isolation; no hang
    pytester.makepyfile(BREAKPOINT)
    for plugin in ("--rootless-off", "--rootless"):
        result = pytester.run(
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "rootless",
            plugin,
            "-rf",
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["E           bdb.BdbQuit", "FAILED *::test_stops*"])


LAST_FAILED = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_numbers(n):
    assert n % 2 == 0
"""


def test_last_failed_and_keywords_select_isolated_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LAST_FAILED)
    first = pytester.runpytest_subprocess("-p", "rootless", "--rootless")
    first.assert_outcomes(passed=2, failed=2)
    again = pytester.runpytest_subprocess("-p", "rootless", "--rootless", "--lf", "-v")
    again.assert_outcomes(failed=2)  # only the two that failed ran
    again.stdout.fnmatch_lines_random(
        ["*test_numbers[[]1[]] FAILED*", "*test_numbers[[]3[]] FAILED*"]
    )
    picked = pytester.runpytest_subprocess(
        "-p", "rootless", "--rootless", "-k", "3", "-p", "no:cacheprovider"
    )
    picked.assert_outcomes(failed=1, deselected=3)


# --- Python 3.12+: forking a multi-threaded process -------------------------------------------

OWN_FORK = """
import os, threading
import pytest

def test_own_fork_with_a_thread_still_warns():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.warns(DeprecationWarning, match="multi-threaded"):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
        os.waitpid(pid, 0)
    finally:
        stop.set()
        thread.join()

@pytest.mark.parametrize("n", range(3))
def test_other(n):
    pass
"""


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the warning is Python 3.12's")
@pytest.mark.parametrize(
    "threads", [["-n", "2"], ["-o", "faulthandler_timeout=60"]], ids=["xdist", "faulthandler"]
)
def test_fork_warnings_stay_errors(pytester: pytest.Pytester, threads: list[str]) -> None:
    # pytest has threads here (execnet's, faulthandler's watchdog): containers start through
    # a relay forked from it, whose warning the runtime acknowledges for that one fork only;
    # a test's own fork in a multi-threaded process still warns, and "error" still applies.
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(OWN_FORK)
    result = pytester.runpytest_subprocess("-p", "rootless", "--rootless", *threads)
    result.assert_outcomes(passed=4)


HYPOTHESIS_TESTS = """
from hypothesis import given, settings, strategies as st

@settings(max_examples=20)
@given(st.integers())
def test_property(n):
    assert isinstance(n, int)

@settings(max_examples=50)
@given(st.integers(min_value=0))
def test_failing_property(n):
    assert n < 10
"""


def test_hypothesis_works_in_a_read_only_project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hypothesis's example database ``.hypothesis/`` lies in the project, read-only
    inside: isolated tests get a throwaway copy-on-write view of it, so hypothesis does
    not warn (``filterwarnings = error`` would fail every hypothesis test), and the
    host's database is left as it was."""
    pytest.importorskip("hypothesis", reason="hypothesis is in the test extra")
    # On a CI machine hypothesis keeps no database (its "ci" profile): the inner runs
    # are a developer's, where it does.
    settings_module = pytest.importorskip("hypothesis._settings")
    for key in getattr(settings_module, "_CI_VARS", {"CI": None}):
        monkeypatch.delenv(key, raising=False)
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(HYPOTHESIS_TESTS)
    for fresh in (True, False):  # no .hypothesis yet, then one a plain run filled
        if not fresh:
            pytester.runpytest_subprocess("-p", "no:rootless").assert_outcomes(passed=1, failed=1)
        database = pytester.path / ".hypothesis" / "examples"
        before = sorted(p.relative_to(database) for p in database.rglob("*"))
        assert fresh or before  # the plain run saved its failing example
        result = pytester.runpytest_subprocess("-p", "rootless", "--rootless", "-rA")
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["E       assert 10 < 10"])
        result.stdout.no_fnmatch_line("*HypothesisWarning*")
        assert sorted(p.relative_to(database) for p in database.rglob("*")) == before
