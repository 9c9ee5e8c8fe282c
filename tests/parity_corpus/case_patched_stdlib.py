# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Tests that patch the standard library for their whole duration (a fixture's
``mock.patch``, as pytest-mock's ``mocker`` does: setup, call and teardown), including
what carries an isolated test's reports: os.write returning 0, os.read, json, socket,
time, select, signal. The machinery binds what it uses before any test runs."""

from unittest import mock

import pytest

BROKEN = RuntimeError("patched by the test: whoever calls this is not the test")

PATCHES = {
    "os.write": {"return_value": 0},  # a file-locking library's test does this
    "os.read": {"return_value": b""},
    "os._exit": {"side_effect": BROKEN},
    "json.dumps": {"side_effect": BROKEN},
    "json.loads": {"side_effect": BROKEN},
    "json.JSONEncoder": {"side_effect": BROKEN},
    "socket.socket": {"side_effect": BROKEN},
    "socket.send_fds": {"side_effect": BROKEN},
    "time.time": {"return_value": 0.0},
    "time.monotonic": {"side_effect": BROKEN},
    "time.sleep": {"side_effect": BROKEN},
    "select.select": {"side_effect": BROKEN},
    "select.poll": {"side_effect": BROKEN},
    "signal.signal": {"side_effect": BROKEN},
    "io.StringIO": {"side_effect": BROKEN},
}


def _is_patched(name):
    module, _, attribute = name.rpartition(".")
    return isinstance(getattr(__import__(module), attribute), mock.NonCallableMock)


@pytest.fixture(params=sorted(PATCHES))
def patched(request):
    """The name patched from the test's setup to its teardown (the mock itself stays out
    of the reports: its repr holds an id)."""
    with mock.patch(request.param, **PATCHES[request.param]):
        yield request.param
    assert not _is_patched(request.param)


def test_patched_for_the_whole_test(patched):
    assert _is_patched(patched)
    print(f"{patched} is patched")  # captured output goes up with the report


def test_patched_and_failing(patched):
    assert patched == "nothing", "a failure's report is sent while patched"
