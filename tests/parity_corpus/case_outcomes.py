# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Every outcome, raised every way pytest knows."""

import sys

import pytest


@pytest.fixture
def broken_setup():
    print("setting up broken_setup")
    raise RuntimeError("setup boom")


@pytest.fixture
def broken_teardown():
    print("setting up broken_teardown")
    yield
    print("tearing down broken_teardown")
    raise RuntimeError("teardown boom")


def test_pass():
    print("pass-output")


def test_fail():
    print("fail-stdout")
    print("fail-stderr", file=sys.stderr)
    assert 1 + 1 == 3


def test_setup_error(broken_setup):
    pass


def test_teardown_error(broken_teardown):
    pass


def test_fail_and_teardown_error(broken_teardown):
    assert 0, "body fails first"


def test_missing_fixture(no_such_fixture):
    pass


def test_skip_in_body():
    pytest.skip("skipped in the body")


@pytest.mark.skip(reason="skipped by a marker")
def test_skip_marker():
    pass


@pytest.mark.skipif(sys.platform == "linux", reason="skipif on linux")
def test_skipif():
    pass


def test_importorskip():
    pytest.importorskip("a_module_that_is_not_there_at_all")


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert 0


@pytest.mark.xfail(raises=ZeroDivisionError, reason="a specific exception")
def test_xfail_raises_other():
    raise KeyError("not the expected one")


def test_xfail_imperative():
    pytest.xfail("xfailed from the body")


@pytest.mark.xfail(reason="not strict", strict=False)
def test_xpass():
    pass


@pytest.mark.xfail(reason="strict", strict=True)
def test_xpass_strict():
    pass


@pytest.mark.xfail(run=False, reason="not run")
def test_xfail_not_run():
    raise AssertionError("never runs")


def test_fail_explicit():
    pytest.fail("failed on purpose")


def test_fail_no_traceback():
    pytest.fail("no traceback here", pytrace=False)


def test_exception_chain():
    try:
        {}["missing"]
    except KeyError as exc:
        raise ValueError("while handling") from exc


def test_exception_group():
    raise ExceptionGroup("several", [ValueError("one"), TypeError("two")])


def _helper(depth):
    if depth == 0:
        raise OSError(2, "deep down")
    _helper(depth - 1)


def test_deep_traceback():
    _helper(3)


def test_system_exit():
    raise SystemExit(3)


def test_warns_but_passes():
    import warnings

    warnings.warn("a plain user warning", UserWarning)
