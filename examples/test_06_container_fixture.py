"""Lesson 6: drive a container from a test; root in there, nobody out here.

Kernel mechanism, user_namespaces(7) and pid_namespaces(7) together: the ``container``
fixture starts a live container and runs each function you hand it in a new process
inside. With ``root=True`` that process is uid 0 *in its user namespace*; the kernel maps
uid 0 in there to your own uid out here, so the host sees every process of the container
owned by you, with your powers and no more. When the container's init (PID 1 of its PID
namespace) ends, the kernel kills every process left in it.

Why it matters: "root" in a rootless container is a view, not a privilege. A process that
escaped it would still be you, and nothing a container starts can outlive it.
"""

import os
import subprocess
import uuid

import pytest

import pytest_rootless


@pytest.mark.container(root=True)
def test_root_in_here_nobody_out_there(container: pytest_rootless.Container) -> None:
    assert container.run(os.getuid) == 0, "not uid 0 inside: no user namespace"
    init = container.pid  # the container's PID 1, as the host numbers it
    owner = os.stat(f"/proc/{init}").st_uid
    assert owner == os.getuid(), f"the host sees the container owned by uid {owner}"


def test_a_file_written_inside_never_reaches_the_host(container: pytest_rootless.Container) -> None:
    path = f"/tmp/lesson6-{uuid.uuid4().hex}"
    container.write_text(path, "inside only")
    assert container.read_text(path) == "inside only"
    assert not os.path.exists(path), "the file reached the host's /tmp"


def test_a_process_started_inside_dies_with_the_container(
    container: pytest_rootless.Container,
) -> None:
    token = f"lesson6-{uuid.uuid4().hex}"
    container.run(lambda: subprocess.Popen(["sh", "-c", "sleep 300; true", token]).pid)
    init = container.pid
    container.close()
    assert not os.path.exists(f"/proc/{init}"), "the container's init is still there"
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    survivors.append(pid)
        except OSError:
            continue
    assert survivors == [], f"processes outlived their container: {survivors}"
