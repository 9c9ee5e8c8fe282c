"""Lesson 14: why rootless matters: a "root" that gets out is still you.

Kernel mechanism, user_namespaces(7): every uid a process has inside a user namespace is
translated, through the namespace's uid_map, to a uid of the host's kernel, and that host
uid is what the kernel checks and records outside: as the owner of the files it creates
and of its processes. In a rootless container the map has one line, "0 <your uid> 1": the
test's uid 0 *is* your uid, seen through the map. A container engine that runs as root (a
daemon, or `sudo`) starts containers whose root is the host's root unless it maps it away:
one escape (a kernel bug, a mount left writable, a leaked file descriptor) and the attacker
owns the machine. An escape from a rootless container gets your uid, which it had anyway.

Why it matters: rootless isolation is defence in depth that costs no privilege: the worst
case is bounded by what your own account may do. (That holds for a pytest run by a normal
user; a pytest run as real root maps uid 0 to root: the test process keeps no capability,
but its files are root's. Run tests as an ordinary user.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pytest_rootless

#: What the "root" test below leaves in its tmp_path (tmp_path stays on the host).
EVIDENCE = "made-by-root.txt"


@pytest.mark.isolated(root=True)
def test_root_writes_a_file(tmp_path: Path) -> None:
    assert os.getuid() == 0, f"uid {os.getuid()}: root=True was not applied (no container?)"
    (tmp_path / EVIDENCE).write_text("written by uid 0\n")
    assert (tmp_path / EVIDENCE).stat().st_uid == 0, "inside, the file is not root's"


def test_on_the_host_roots_file_is_yours(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Runs on the host, after the test above: its tmp_path is kept in pytest's basetemp,
    in a directory named after the test."""
    found = sorted(tmp_path_factory.getbasetemp().glob(f"test_root_writes_a_file*/{EVIDENCE}"))
    assert found, "the test above left nothing in its tmp_path: see its failure"
    owner = found[-1].stat().st_uid
    assert owner == os.getuid(), f"the file of uid 0 inside belongs to uid {owner} out here"


@pytest.mark.container(root=True)
def test_roots_processes_are_yours(container: pytest_rootless.Container) -> None:
    assert container.run(os.getuid) == 0, "not uid 0 inside: no user namespace"
    # The host's view of the container's init: /proc/<pid>/status, "Uid: real effective
    # saved filesystem".
    for line in Path(f"/proc/{container.pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            uids = {int(uid) for uid in line.split()[1:]}
    assert uids == {os.getuid()}, f"the host sees the container's init as uid(s) {uids}"
