# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Skip marks are evaluated before any fixture: a module skipped by its pytestmark never
sets up its module- and session-scoped fixtures, which need what the skip guards
against (pytest's skipping plugin runs first in pytest_runtest_setup)."""

import os

import pytest

MISSING = "ROOTLESS_PARITY_NEVER_SET"

pytestmark = pytest.mark.skipif(MISSING not in os.environ, reason="needs the variable")


@pytest.fixture(scope="module")
def from_module():
    return os.environ[MISSING]  # KeyError if it were set up


@pytest.fixture(scope="session")
def from_session():
    return os.environ[MISSING]


def test_module_fixture(from_module):
    pass


def test_session_fixture(from_session):
    pass


@pytest.fixture(scope="class")
def from_class():
    return os.environ[MISSING]


class TestGuarded:
    @pytest.mark.skip(reason="skipped by its own mark")
    def test_skip(self, from_class):
        pass

    @pytest.mark.xfail(run=False, reason="never run")
    def test_xfail_not_run(self, from_class):
        pass
