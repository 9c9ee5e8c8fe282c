"""Lesson 6: the hostname is yours.

Kernel mechanism, uts_namespaces(7): the hostname and NIS domain name that uname(2) reports
live in a UTS namespace. A process in a new one may call sethostname(2) there (it owns the
namespace) without changing the name of the machine. pytest-rootless sets the hostname to
"sandbox" (or to the marker's `hostname=`) and writes a matching /etc/hostname and
/etc/hosts into the container's own /etc.

Why it matters: code that builds file names, cache keys or log lines from the hostname gives
the same result on every machine, and a test can pretend to be a given host without touching
the real one.
"""

import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.isolated


def test_default_hostname_is_sandbox() -> None:
    name = socket.gethostname()
    assert name == "sandbox", f"{name!r} is the machine's own hostname"
    assert Path("/etc/hostname").read_text().strip() == "sandbox", "the host's /etc/hostname"


@pytest.mark.isolated(hostname="lab1")  # the closest marker wins, option by option
def test_the_marker_chooses_the_hostname() -> None:
    name = socket.gethostname()
    assert name == "lab1", f"{name!r} is the machine's own hostname"
    assert Path("/etc/hostname").read_text().strip() == "lab1", "the host's /etc/hostname"
    hosts = Path("/etc/hosts").read_text().split()
    assert "lab1" in hosts, "/etc/hosts does not name this container"
