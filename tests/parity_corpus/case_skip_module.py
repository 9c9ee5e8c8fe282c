# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""A module skipped as a whole by its pytestmark."""

import pytest

pytestmark = pytest.mark.skip(reason="the whole module is skipped")


def test_one():
    pass


def test_two():
    raise AssertionError("never runs")
