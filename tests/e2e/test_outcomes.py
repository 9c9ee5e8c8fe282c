"""An isolated test reports exactly what it would report without isolation: outcomes,
assertion messages, captured output on the right phase, warnings, live ``-s`` output."""

from __future__ import annotations

import pytest

TIMEOUT = 120

ALL_OUTCOMES = """
    import sys

    import pytest


    @pytest.fixture
    def broken_setup():
        print("setting up broken_setup")
        raise RuntimeError("setup boom")


    @pytest.fixture
    def broken_teardown():
        yield
        print("tearing down broken_teardown")
        raise RuntimeError("teardown boom")


    def test_pass():
        print("pass-output")


    def test_fail():
        print("fail-stdout")
        print("fail-stderr", file=sys.stderr)
        assert {"a": 1} == {"a": 2}


    def test_setup_error(broken_setup):
        pass


    def test_teardown_error(broken_teardown):
        pass


    def test_skip_in_body():
        pytest.skip("skipped in the body")


    @pytest.mark.skip(reason="skipped by a marker")
    def test_skip_marker():
        pass


    @pytest.mark.xfail(reason="known bug")
    def test_xfail():
        assert 0


    @pytest.mark.xfail(reason="not strict", strict=False)
    def test_xpass():
        pass
"""

EXPECTED = {"passed": 2, "failed": 1, "errors": 2, "skipped": 2, "xfailed": 1, "xpassed": 1}

# Lines that must appear, in this order, in the output of both runs.
EXPECTED_LINES = [
    "*_ ERROR at setup of test_setup_error _*",
    "*RuntimeError: setup boom",
    "*Captured stdout setup*",
    "setting up broken_setup",
    "*_ ERROR at teardown of test_teardown_error _*",
    "*RuntimeError: teardown boom",
    "*Captured stdout teardown*",
    "tearing down broken_teardown",
    "*_ test_fail _*",
    "E       AssertionError: assert {'a': 1} == {'a': 2}",
    "*Differing items:*",
    "*Captured stdout call*",
    "fail-stdout",
    "*Captured stderr call*",
    "fail-stderr",
    "*short test summary info*",
]


def _summary(result: pytest.RunResult) -> list[str]:
    """The lines of the short test summary (no timing in them)."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "short test summary info" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
    return lines[start + 1 : end]


def test_outcomes_identical_with_and_without_isolation(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ALL_OUTCOMES)
    plain = pytester.runpytest_subprocess("-p", "rootless", "-ra", timeout=TIMEOUT)
    isolated = pytester.runpytest_subprocess("-p", "rootless", "--rootless", "-ra", timeout=TIMEOUT)

    plain.assert_outcomes(**EXPECTED)
    isolated.assert_outcomes(**EXPECTED)
    assert isolated.parseoutcomes() == plain.parseoutcomes()
    plain.stdout.fnmatch_lines(EXPECTED_LINES)
    isolated.stdout.fnmatch_lines(EXPECTED_LINES)
    isolated.stdout.fnmatch_lines(["rootless: isolating every test (--rootless)*"])
    assert _summary(isolated) == _summary(plain)
    assert isolated.ret == plain.ret == pytest.ExitCode.TESTS_FAILED


WARNS = """
    import warnings

    import pytest


    @pytest.mark.isolated
    def test_warns():
        warnings.warn("distinctive-e2e-warning from inside", UserWarning)
"""


def test_warning_inside_appears_in_warnings_summary(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(WARNS)
    result = pytester.runpytest_subprocess("-p", "rootless", "-W", "default", timeout=TIMEOUT)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*warnings summary*",
            "*test_warns*",
            "*UserWarning: distinctive-e2e-warning from inside",
        ]
    )


CAPTURE = """
    import sys

    import pytest


    @pytest.fixture
    def noisy():
        print("printed-in-fixture-setup")
        print("stderr-in-fixture-setup", file=sys.stderr)
        yield


    @pytest.mark.isolated
    def test_capture(noisy):
        print("printed-in-body")
        print("stderr-in-body", file=sys.stderr)
        assert False
"""


def test_captured_output_in_the_right_phase_sections(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CAPTURE)
    result = pytester.runpytest_subprocess("-p", "rootless", timeout=TIMEOUT)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_capture _*",
            "E       assert False",
            "*- Captured stdout setup -*",
            "printed-in-fixture-setup",
            "*- Captured stderr setup -*",
            "stderr-in-fixture-setup",
            "*- Captured stdout call -*",
            "printed-in-body",
            "*- Captured stderr call -*",
            "stderr-in-body",
        ]
    )


LIVE = """
    import pytest


    @pytest.mark.isolated
    def test_live():
        print("live-" + "output-line")
"""


def test_dash_s_shows_output_live(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LIVE)
    result = pytester.runpytest_subprocess("-p", "rootless", "-s", timeout=TIMEOUT)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*live-output-line*"])
    result.stdout.no_fnmatch_line("*Captured stdout*")
