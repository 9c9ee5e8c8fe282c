"""A test that crashes or hangs fails with a report naming the phase and the cause, with
the output captured until then; the session goes on."""

from __future__ import annotations

import time

import pytest

TIMEOUT = 120

CRASH_IN_BODY = """
    import ctypes
    import os
    import signal

    import pytest


    @pytest.mark.isolated
    def test_boom():
        print("before crash")
        {crash}


    @pytest.mark.isolated
    def test_after():
        pass
"""


TRACEBACK_LINE = "*File *test_crash_in_the_test_body.py*, line 11 in test_boom*"


@pytest.mark.parametrize(
    ("crash", "expected"),
    [
        pytest.param(
            "ctypes.string_at(0)",
            ["*rootless:*SIGSEGV*during call*", "*faulthandler*", TRACEBACK_LINE],
            id="segfault",
        ),
        pytest.param(
            "os.abort()",
            ["*rootless:*SIGABRT*exit status 134*during call*", "*faulthandler*", TRACEBACK_LINE],
            id="abort",
        ),
        pytest.param("os._exit(71)", ["*rootless:*status 71*during call*"], id="exit-71"),
        pytest.param(
            "os.kill(os.getpid(), signal.SIGKILL)",
            ["*rootless:*SIGKILL*exit status 137*during call*"],
            id="sigkill",
        ),
    ],
)
def test_crash_in_the_test_body(pytester: pytest.Pytester, crash: str, expected: list[str]) -> None:
    pytester.makepyfile(CRASH_IN_BODY.replace("{crash}", crash))
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*::test_boom FAILED*", "*::test_after PASSED*"])
    result.stdout.fnmatch_lines(
        [
            "*_ test_boom _*",
            *expected,
            "*Captured stdout call*",
            "before crash",
            "*short test summary info*",
            "FAILED *::test_boom*",
        ]
    )


CRASH_IN_FIXTURE = """
    import ctypes

    import pytest


    @pytest.fixture
    def crashing():
        print("before crash")
        if {in_setup}:
            ctypes.string_at(0)
        yield
        print("before crash")
        ctypes.string_at(0)


    @pytest.mark.isolated
    def test_boom(crashing):
        pass


    @pytest.mark.isolated
    def test_after():
        pass
"""


@pytest.mark.parametrize(
    ("phase", "outcomes", "header", "line"),
    [
        pytest.param(
            "setup",
            {"errors": 1, "passed": 1},
            "*_ ERROR at setup of test_boom _*",
            10,
            id="setup",
        ),
        pytest.param(
            "teardown",
            {"errors": 1, "passed": 2},
            "*_ ERROR at teardown of test_boom _*",
            13,
            id="teardown",
        ),
    ],
)
def test_segfault_in_a_function_fixture(
    pytester: pytest.Pytester, phase: str, outcomes: dict[str, int], header: str, line: int
) -> None:
    pytester.makepyfile(CRASH_IN_FIXTURE.replace("{in_setup}", str(phase == "setup")))
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(**outcomes)
    result.stdout.fnmatch_lines(["*::test_after PASSED*"])
    result.stdout.fnmatch_lines(
        [
            header,
            f"*rootless:*SIGSEGV*during {phase}*",
            f"*File *test_segfault_in_a_function_fixture.py*, line {line} in crashing*",
            f"*Captured stdout {phase}*",
            "before crash",
            "*short test summary info*",
            "ERROR *::test_boom*",
        ]
    )


HANG = """
    import time

    import pytest


    @pytest.mark.isolated(timeout=1)
    def test_sleeps():
        print("partial output")
        time.sleep(30)


    @pytest.mark.isolated
    def test_after():
        pass
"""


def test_timeout_stops_the_test_and_dumps_its_stack(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(HANG)
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"the run took {elapsed:.1f}s with timeout=1"
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*::test_sleeps FAILED*", "*::test_after PASSED*"])
    result.stdout.fnmatch_lines(
        [
            "*_ test_sleeps _*",
            "*rootless:*timeout=1s*during call*",
            "*stack of every thread*",
            "*File *test_timeout_stops_the_test_and_dumps_its_stack.py*, line 9 in test_sleeps*",
            "*Captured stdout call*",
            "partial output",
        ]
    )
