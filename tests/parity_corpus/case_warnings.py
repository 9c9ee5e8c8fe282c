# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Warnings raised in every phase and every way, for the warnings summary."""

import warnings

import pytest


class CorpusWarning(UserWarning):
    """A warning class defined in the test module."""


@pytest.fixture
def warns_in_setup():
    warnings.warn("warning in function setup", UserWarning)
    yield
    warnings.warn("warning in function teardown", UserWarning)


@pytest.fixture(scope="module")
def warns_in_module_setup():
    warnings.warn("warning in module setup", UserWarning)


def test_user_warning():
    warnings.warn("a user warning", UserWarning)


def test_deprecation_warning():
    warnings.warn("deprecated thing", DeprecationWarning)


def test_custom_category():
    warnings.warn("custom category", CorpusWarning)


def test_same_warning_twice():
    for _ in range(2):
        warnings.warn("repeated warning", UserWarning)


def test_phases(warns_in_setup, warns_in_module_setup):
    warnings.warn("warning in call", RuntimeWarning)


def test_pytest_warns_passes():
    with pytest.warns(UserWarning, match="expected"):
        warnings.warn("expected warning", UserWarning)


def test_pytest_warns_fails():
    with pytest.warns(DeprecationWarning):
        warnings.warn("wrong category", UserWarning)


@pytest.mark.filterwarnings("error::UserWarning")
def test_warning_as_error():
    warnings.warn("turned into an error", UserWarning)


@pytest.mark.filterwarnings("ignore:ignored")
def test_ignored_warning():
    warnings.warn("ignored by a marker", UserWarning)


def test_pytest_warning():
    warnings.warn(pytest.PytestWarning("a pytest warning"))


def test_warning_with_long_message():
    warnings.warn("long " * 50, UserWarning)


def test_warning_then_failure():
    warnings.warn("warned before failing", UserWarning)
    assert False
