# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Fixture errors in setup and teardown, at every scope (the higher scopes run on the
host under --rootless, the function scope in the container)."""

import pytest


@pytest.fixture(scope="module")
def module_resource():
    print("module setup")
    yield "module-value"
    print("module teardown")


@pytest.fixture(scope="class")
def class_broken_teardown():
    yield
    print("class teardown output")
    raise RuntimeError("class fixture teardown boom")


@pytest.fixture(scope="class")
def class_broken_setup():
    print("class setup output")
    raise RuntimeError("class fixture setup boom")


@pytest.fixture
def fn_fixture(module_resource):
    print("function setup, got", module_resource)
    yield module_resource
    print("function teardown")


@pytest.fixture(params=["p1", "p2"])
def param_fixture(request):
    return request.param


def test_uses_module(fn_fixture):
    assert fn_fixture == "module-value"


def test_param_fixture(param_fixture):
    assert param_fixture == "p1"


class TestClassTeardownFails:
    def test_one(self, class_broken_teardown):
        pass

    def test_two(self, class_broken_teardown):
        print("body of test_two")


class TestClassSetupFails:
    def test_one(self, class_broken_setup):
        pass

    def test_two(self, class_broken_setup):
        pass


@pytest.fixture
def error_then_fail_teardown():
    yield
    raise ValueError("function teardown after a failing body")


def test_fail_then_teardown(error_then_fail_teardown, module_resource):
    assert module_resource == "other"


@pytest.fixture
def two_finalizers(request):
    def first():
        raise KeyError("first finalizer")

    def second():
        raise IndexError("second finalizer")

    request.addfinalizer(first)
    request.addfinalizer(second)


def test_two_finalizers_fail(two_finalizers):
    pass


@pytest.fixture
def fixture_recursion(fixture_recursion_b):
    return 1


def test_fixture_uses_unknown(fixture_recursion):
    pass


class TestSetupMethods:
    def setup_method(self, method):
        print("setup_method for", method.__name__)

    def teardown_method(self, method):
        print("teardown_method for", method.__name__)
        if method.__name__ == "test_teardown_method_fails":
            raise RuntimeError("teardown_method boom")

    def test_fine(self):
        pass

    def test_teardown_method_fails(self):
        pass


@pytest.fixture(scope="module")
def module_broken_teardown():
    yield
    raise RuntimeError("module teardown boom")


def test_last_uses_module_broken_teardown(module_broken_teardown):
    pass
