# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""record_property and friends (they end up in junitxml)."""

import pytest


def test_record_property(record_property):
    record_property("example_key", 1)
    record_property("text", "a value with <xml> & symbols")


def test_record_property_fails(record_property):
    record_property("before_failure", [1, 2])
    assert False


def test_user_properties_direct(request):
    request.node.user_properties.append(("direct", "yes"))


@pytest.fixture
def property_in_fixture(record_property):
    record_property("from_fixture", "setup")
    yield
    record_property("from_fixture_teardown", "teardown")


def test_property_from_fixture(property_in_fixture):
    pass


def test_record_xml_attribute(record_xml_attribute):
    record_xml_attribute("custom_attr", "custom value")


def test_record_testsuite_property(record_testsuite_property):
    record_testsuite_property("suite_key", "suite value")
