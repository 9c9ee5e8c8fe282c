"""Lesson 12: drive a live container from a test on the host.

Kernel mechanism, pid_namespaces(7) and unix(7): the ``container`` fixture starts a
container whose init (PID 1) stays up and waits for requests on a socket. For each
function you hand it, init forks a new process, isolated like a test process, which runs
the function and sends its result back as data; an exception comes back as the same type,
with its errno. The test itself runs on the host, so it can compare the two sides: what
the container sees and what the host sees. ``container.pid`` is init's pid as the host
numbers it; ``close()`` ends init, and with it every process in the container.

Why it matters: a test can run a server, a client or an installer inside and check the
host from outside, in one function: a file that is written in there never reaches the
host, a refusal arrives as the same OSError the code would get.
"""

from __future__ import annotations

import errno
import os
import socket
import uuid

import pytest

import pytest_rootless


def test_a_function_runs_inside(container: pytest_rootless.Container) -> None:
    base = 41
    assert container.run(lambda: base + 1) == 42  # a closure, shipped in by value
    assert container.run(socket.gethostname) == "sandbox", "it ran on the host"
    assert socket.gethostname() != "sandbox", "the host is called sandbox: a confusing lesson"


def test_refusals_come_back_as_the_same_exception(container: pytest_rootless.Container) -> None:
    with pytest.raises(OSError, match="Read-only file system") as refused:
        container.run(os.remove, "/usr/bin/env")
    assert refused.value.errno == errno.EROFS, f"not a read-only refusal: {refused.value}"
    assert os.path.exists("/usr/bin/env"), "the host lost /usr/bin/env"


def test_a_file_written_inside_never_reaches_the_host(container: pytest_rootless.Container) -> None:
    path = f"/tmp/lesson11-{uuid.uuid4().hex}"
    container.write_text(path, "inside only")
    assert container.read_text(path) == "inside only"
    assert not os.path.exists(path), "the file reached the host's /tmp"
    assert container.changes() == {path: "added"}, "the container's /tmp had other changes"
