# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Files a module-, class- or session-scoped fixture makes in the temporary directory
(tempfile.mkdtemp, mkstemp, NamedTemporaryFile) are there for the tests that use it."""

import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="module")
def zones():
    directory = tempfile.mkdtemp()
    with open(os.path.join(directory, "PST"), "w") as f:
        f.write("PST")
    yield directory
    shutil.rmtree(directory)


@pytest.fixture(scope="session")
def one_file():
    fd, path = tempfile.mkstemp(suffix=".txt")
    os.write(fd, b"session")
    os.close(fd)
    yield path
    os.unlink(path)


@pytest.fixture(scope="class")
def named():
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as f:
        f.write("class")
        f.flush()
        yield f.name


class TestZones:
    def test_named(self, named):
        with open(named) as f:
            assert f.read() == "class"


def test_zone_file(zones):
    with open(os.path.join(zones, "PST")) as f:
        assert f.read() == "PST"


def test_zone_listing(zones):
    assert os.listdir(zones) == ["PST"]


def test_session_file(one_file):
    with open(one_file) as f:
        assert f.read() == "session"


def test_own_temporary_files_are_writable():
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"mine")
