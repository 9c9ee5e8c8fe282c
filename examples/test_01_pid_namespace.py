"""Lesson 1: you are in your own PID world, and it ends with its PID 1.

Kernel mechanism, pid_namespaces(7): a process created with CLONE_NEWPID becomes PID 1 of a
fresh PID namespace, and every process forked inside it gets a pid numbered from there. A
process can see, signal and ptrace only the processes of its own namespace (and of the ones
nested in it). The container's /proc is a fresh proc filesystem mounted for that namespace,
so it lists only the container's processes. pytest-rootless makes the container's init PID 1
and runs the test as its child, PID 2.

PID 1 has two duties the kernel gives no other process. A process whose parent dies is
re-parented to the init of its namespace, which must reap it with wait(2), or it stays a
zombie. And when PID 1 exits, the kernel sends SIGKILL to every process left in the
namespace: nothing outlives its container.

Why it matters: a test cannot see, kill or trace pytest, your editor, your shell or any
other process on the machine, and nothing it starts (a server, a daemon that double-forked
to hide) can outlive it.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import pytest_rootless

#: Evaluated on the host, when pytest imports this module: pytest's own pid out there.
PYTEST_PID = os.getpid()


def visible_pids() -> set[int]:
    """The pids this process can see: the numeric directories of /proc."""
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def parent_of(pid: int) -> int:
    """The parent pid of `pid`, the 4th field of /proc/<pid>/stat (proc_pid_stat(5))."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def reaped(pid: int, seconds: float = 10.0) -> bool:
    """Whether `pid` disappears from /proc: a zombie stays listed until its parent reaps it.
    (Polling is the only way to watch a process that is not your child.)"""
    deadline = time.monotonic() + seconds
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.isolated
def test_my_parent_is_pid_1() -> None:
    assert os.getppid() == 1, "the parent is not the container's init: no PID namespace"


@pytest.mark.isolated
def test_proc_lists_only_the_container() -> None:
    pids = visible_pids()
    assert pids == {1, os.getpid()}, f"/proc shows {len(pids)} processes of the host"


@pytest.mark.isolated
def test_pytest_is_invisible() -> None:
    if PYTEST_PID in (1, 2):
        pytest.skip("pytest is itself PID 1 or 2 on this host (the init of a container?)")
    assert PYTEST_PID not in visible_pids(), f"pytest (pid {PYTEST_PID}) is visible"


@pytest.mark.isolated
def test_a_new_process_gets_a_small_pid() -> None:
    # `cat` waits for its stdin to close: no signal needed to end it.
    with subprocess.Popen(["cat"], stdin=subprocess.PIPE) as child:
        pids = visible_pids()
        child.communicate()
    # The next free number after init (1) and the test process (2).
    assert child.pid == 3, f"the child got pid {child.pid}, numbered by the host"
    assert pids == {1, os.getpid(), child.pid}, f"/proc shows {len(pids)} processes"


@pytest.mark.isolated
def test_an_orphan_is_adopted_and_reaped_by_pid_1() -> None:
    read_end, write_end = os.pipe()
    # The shell starts `cat` in the background, prints its pid and exits: cat is orphaned.
    # cat reads the pipe (fd 3), so it ends when we close the other end: no signal needed.
    shell = subprocess.run(
        ["sh", "-c", "exec 3<&0; cat <&3 >/dev/null 2>&1 & echo $!"],
        stdin=read_end,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    os.close(read_end)
    orphan = int(shell.stdout)
    try:
        adopter = parent_of(orphan)
    finally:
        os.close(write_end)  # cat sees the end of its input and exits
    assert adopter == os.getppid() == 1, (
        f"the orphan {orphan} was adopted by pid {adopter}, not by this test's own init "
        f"(the test's parent is {os.getppid()}): no PID namespace"
    )
    assert reaped(orphan), f"{orphan} stayed a zombie: its new parent did not reap it"


def test_everything_dies_with_pid_1(container: pytest_rootless.Container) -> None:
    """Not isolated: this test drives a live container from the host (lesson 12 shows the
    ``container`` fixture in full), starts a process in it, then ends the container."""
    token = f"lesson1-{uuid.uuid4().hex}"
    # `sleep 300; true`: the shell stays (it has more to do after sleep) with the token in
    # its command line, so the host can look for it below.
    container.run(lambda: subprocess.Popen(["sh", "-c", "sleep 300; true", token]).pid)
    init = container.pid  # the container's PID 1, as the host numbers it
    container.close()  # init exits; the kernel kills the rest of its namespace
    assert not os.path.exists(f"/proc/{init}"), "the container's init is still there"
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                survivors.append(pid)
        except OSError:
            continue  # it ended while we looked
    assert survivors == [], f"processes outlived their container's PID 1: {survivors}"
