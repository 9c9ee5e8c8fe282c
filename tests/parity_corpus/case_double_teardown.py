# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""The teardown of a function-scoped fixture and of a module-scoped one both fail after
the same test: pytest reports them together."""

import pytest


@pytest.fixture(scope="module")
def module_breaks_on_teardown():
    yield
    raise RuntimeError("module fixture teardown boom")


@pytest.fixture
def function_breaks_on_teardown():
    yield
    raise ValueError("function fixture teardown boom")


def test_both_teardowns_fail(module_breaks_on_teardown, function_breaks_on_teardown):
    pass
