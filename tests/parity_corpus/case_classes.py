# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""skip and xfail at class level, and skips from setup at every level."""

import pytest


@pytest.mark.skip(reason="class skipped")
class TestSkipped:
    def test_a(self):
        pass

    def test_b(self):
        pass


@pytest.mark.xfail(reason="class xfail")
class TestXfail:
    def test_fails(self):
        assert 0

    def test_passes(self):
        pass


class TestSkipInSetupClass:
    @classmethod
    def setup_class(cls):
        pytest.skip("skipped in setup_class")

    def test_a(self):
        pass


class TestSkipInSetupMethod:
    def setup_method(self, method):
        pytest.skip("skipped in setup_method")

    def test_a(self):
        pass


@pytest.fixture(scope="module")
def module_skips():
    pytest.skip("a module-scoped fixture skips")


def test_module_fixture_skips(module_skips):
    pass


@pytest.fixture
def function_skips():
    pytest.skip("a function fixture skips")


def test_function_fixture_skips(function_skips):
    pass


@pytest.mark.skipif("True", reason="string condition")
def test_skipif_string():
    pass


class TestNested:
    class TestInner:
        def test_inner(self):
            assert 1 == 2
