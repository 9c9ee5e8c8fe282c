# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""A test that stops the session (``session.shouldstop``): the tests after it do not
run, and the module's fixture is torn down once."""

import pytest


@pytest.fixture(scope="module")
def shared():
    print("module setup")
    yield
    print("module teardown")


def test_runs(shared):
    pass


def test_stops_the_session(request, shared):
    request.session.shouldstop = "stopped by a test"


def test_never_runs(shared):
    pass
