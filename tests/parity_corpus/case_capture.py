# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Captured output and logs on the right phase; capsys, capfd, caplog."""

import logging
import os
import sys

import pytest

log = logging.getLogger("corpus")


@pytest.fixture
def noisy():
    print("stdout in setup")
    print("stderr in setup", file=sys.stderr)
    log.warning("log in setup")
    yield
    print("stdout in teardown")
    print("stderr in teardown", file=sys.stderr)
    log.warning("log in teardown")


def test_every_phase(noisy):
    print("stdout in call")
    print("stderr in call", file=sys.stderr)
    log.warning("log in call")
    log.info("info is below the default level")
    assert False


def test_every_phase_passing(noisy):
    print("stdout in call")
    log.error("error in call")


def test_capsys(capsys):
    print("first")
    out, err = capsys.readouterr()
    assert out == "first\n"
    print("second")
    print("second err", file=sys.stderr)
    assert False, "capsys keeps what was not read"


def test_capsys_disabled(capsys):
    with capsys.disabled():
        pass
    print("after disabled")


def test_capfd(capfd):
    os.write(1, b"fd one\n")
    os.write(2, b"fd two\n")
    out, err = capfd.readouterr()
    assert (out, err) == ("fd one\n", "fd two\n")
    os.write(1, b"fd one again\n")
    assert False


def test_raw_fd_output():
    os.write(1, b"raw fd 1 output\n")
    os.write(2, b"raw fd 2 output\n")
    assert False


def test_caplog(caplog):
    caplog.set_level(logging.INFO)
    log.info("an info record")
    log.debug("a debug record")
    assert [r.getMessage() for r in caplog.records] == ["an info record"]
    assert "an info record" in caplog.text
    log.warning("then a warning")
    assert False


def test_caplog_at_level(caplog):
    with caplog.at_level(logging.DEBUG, logger="corpus"):
        log.debug("debug inside at_level")
    assert len(caplog.records) == 1
    assert caplog.record_tuples == [("corpus", logging.DEBUG, "debug inside at_level")]


def test_caplog_phases(caplog, noisy):
    assert [r.getMessage() for r in caplog.get_records("setup")] == ["log in setup"]
    log.warning("call record")
    assert [r.getMessage() for r in caplog.get_records("call")] == ["call record"]


def test_unicode_output():
    print("héllo wörld ✓ 日本")
    assert False


def test_no_newline_at_end():
    sys.stdout.write("no newline")
    sys.stderr.write("no newline err")
    assert False


def test_big_output():
    for i in range(2000):
        print(f"line {i} " + "=" * 60)
    assert False
