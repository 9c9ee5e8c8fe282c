"""Report details that come from the host's half and the container's half of a test."""

from __future__ import annotations

import sys

import pytest


def test_one_setup_section_and_durations_include_host_setup(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        def setup_module():
            print("MODULE-SETUP")
            time.sleep(0.3)

        @pytest.fixture
        def fn():
            print("FUNCTION-SETUP")

        @pytest.mark.isolated
        def test_a(fn):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "-rA", "--durations=0", "-vv")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert out.count("Captured stdout setup") == 1
    result.stdout.fnmatch_lines(["MODULE-SETUP", "FUNCTION-SETUP"])
    result.stdout.re_match_lines([r"0\.[3-9]\d*s setup +test_one_setup_section.*::test_a"])


def test_setup_show(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def fn():
            return 1

        @pytest.mark.isolated
        def test_a(fn):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "--setup-show")
    result.stdout.fnmatch_lines(
        ["*SETUP    F fn*", "*test_setup_show.py::test_a (fixtures used: fn*"]
    )


def test_pdb_on_failure_reads_the_terminal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.isolated
        def test_fails():
            x = [1, 2, 3]
            assert not x
        """
    )
    result = pytester.run(
        sys.executable, "-m", "pytest", "-p", "rootless", "--pdb", stdin=b"p x\nc\n", timeout=60
    )
    result.stdout.fnmatch_lines(["*(Pdb)*", "*[1, 2, 3]*"])
    result.assert_outcomes(failed=1)


def test_logs_of_host_side_fixtures_are_captured(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import logging
        import pytest

        @pytest.fixture(scope="module")
        def mod():
            logging.getLogger("app").warning("MODULE-SETUP-LOG")
            yield
            logging.getLogger("app").warning("MODULE-TEARDOWN-LOG")

        @pytest.mark.isolated
        def test_a(mod):
            logging.getLogger("app").warning("BODY-LOG")
            assert False
        """
    )
    for plugin in ("no:rootless", "rootless"):  # the same sections plain and isolated
        result = pytester.runpytest_subprocess("-p", plugin, "-rA")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*- Captured log setup -*",
                "WARNING  app:*MODULE-SETUP-LOG",
                "*- Captured log call -*",
                "WARNING  app:*BODY-LOG",
            ]
        )
