"""Lesson 1: you are in your own PID world.

Kernel mechanism, pid_namespaces(7): a process created with CLONE_NEWPID becomes PID 1 of a
fresh PID namespace, and every process forked inside it gets a pid numbered from there. A
process can see, signal and ptrace only the processes of its own namespace (and of the ones
nested in it). pytest-rootless makes the container's init PID 1 (it reaps orphans and, when
it exits, the kernel kills everything left in the namespace); the test runs as its child,
PID 2. The container's /proc is a fresh proc filesystem mounted for that namespace, so it
lists only the container's processes.

Why it matters: a test cannot see, kill or trace pytest, your editor, your shell or any
other process on the machine, and nothing it starts can outlive it.
"""

import os
import subprocess

import pytest

pytestmark = pytest.mark.isolated

#: Evaluated on the host, when pytest imports this module: pytest's own pid out there.
PYTEST_PID = os.getpid()


def visible_pids() -> set[int]:
    """The pids this process can see: the numeric directories of /proc."""
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def test_my_parent_is_pid_1() -> None:
    assert os.getppid() == 1, "the parent is not the container's init: no PID namespace"


def test_proc_lists_only_the_container() -> None:
    pids = visible_pids()
    assert pids == {1, os.getpid()}, f"/proc shows {len(pids)} processes of the host"


def test_pytest_is_invisible() -> None:
    if PYTEST_PID in (1, 2):
        pytest.skip("pytest is itself PID 1 or 2 on this host (the init of a container?)")
    assert PYTEST_PID not in visible_pids(), f"pytest (pid {PYTEST_PID}) is visible"


def test_a_new_process_gets_a_small_pid() -> None:
    # `cat` waits for its stdin to close: no signal needed to end it.
    with subprocess.Popen(["cat"], stdin=subprocess.PIPE) as child:
        pids = visible_pids()
        child.communicate()
    # The next free number after init (1) and the test process (2).
    assert child.pid == 3, f"the child got pid {child.pid}, numbered by the host"
    assert pids == {1, os.getpid(), child.pid}, f"/proc shows {len(pids)} processes"
