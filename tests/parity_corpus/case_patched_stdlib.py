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


@pytest.fixture(params=sorted(PATCHES))
def patched(request):
    with mock.patch(request.param, **PATCHES[request.param]) as patch:
        yield request.param, patch


def test_patched_for_the_whole_test(patched):
    name, patch = patched
    module, _, attribute = name.rpartition(".")
    assert getattr(__import__(module), attribute) is patch
    print(f"{name} is patched")  # captured output goes up with the report


def test_patched_and_failing(patched):
    assert patched[0] == "nothing", "a failure's report is sent while patched"
