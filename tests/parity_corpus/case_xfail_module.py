# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""A module xfailed as a whole, with one test that passes anyway."""

import pytest

pytestmark = pytest.mark.xfail(reason="the module is expected to fail")


def test_fails():
    assert 0


def test_passes():
    pass


@pytest.mark.xfail(reason="closer marker wins", strict=True)
def test_strict_closer():
    pass
