# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""pytest's own ``subtests`` fixture (pytest 9): each subtest is a report logged in the
middle of the test's call phase."""

import pytest


@pytest.fixture
def subtests_or_skip(request):
    if not hasattr(pytest, "Subtests"):
        pytest.skip("pytest's subtests fixture is pytest 9")
    return request.getfixturevalue("subtests")


def test_pytest_subtests(subtests_or_skip):
    for value in ["a", "b", 3]:
        with subtests_or_skip.test(msg="is a string", value=value):
            assert isinstance(value, str)


def test_pytest_subtests_all_pass(subtests_or_skip):
    for value in range(2):
        with subtests_or_skip.test(value=value):
            print("inside", value)
