"""Lesson 10: limits stop a fork bomb, a memory hog and a busy loop.

Kernel mechanism, cgroups(7): namespaces decide what a process sees, not how much it may
use. A control group counts the resources of every process in it, and its controllers
enforce limits on the total: the `pids` controller refuses fork(2) with EAGAIN past
pids.max, the `memory` controller makes the OOM killer end a process past its limit. With
`pids=` or `memory=`, pytest-rootless makes a cgroup for the container, and init moves into
it first thing, so every process of the container is counted. Where this user may write
no cgroup, setrlimit(2) limits do the job in each process instead: RLIMIT_NPROC (counted
per user namespace), RLIMIT_DATA; `cpu=` is always RLIMIT_CPU, CPU seconds per process
(SIGXCPU, then SIGKILL). The report header says which mechanism is in force.

Why it matters: a test that forks in a loop, leaks memory or spins forever fails on its
own, with a message naming the limit, instead of freezing your machine or the CI runner.

Each test first checks that a limit is in force on its own process (its cgroup is one
pytest-rootless made, or its rlimit is set): without isolation (--rootless-off) it stops
there, because a fork bomb on the host is no lesson. Each bomb is bounded anyway.
"""

from __future__ import annotations

import errno
import math
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PIDS = 16


def own_cgroup(controller: str) -> str | None:
    """This process's cgroup for `controller` if pytest-rootless made it, from
    /proc/self/cgroup ("id:controllers:path"; cgroup v2 has one line, "0::path")."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        mine = controller in controllers.split(",") or controllers == ""
        if mine and "/pytest-rootless-" in path:
            return path
    return None


def limit_in_force(controller: str | None, rlimit: int, at_most: float) -> str | None:
    """How this process is limited, or None: the container's cgroup, or an rlimit."""
    cgroup = own_cgroup(controller) if controller else None
    if cgroup is not None:
        return f"the cgroup {cgroup}"
    soft, _ = resource.getrlimit(rlimit)
    if soft != resource.RLIM_INFINITY and soft <= at_most:
        return f"an rlimit of {soft}"
    return None


@pytest.mark.isolated(pids=PIDS)
def test_a_fork_bomb_is_stopped() -> None:
    how = limit_in_force("pids", resource.RLIMIT_NPROC, PIDS)
    assert how, "no pids limit on this process: no fork bomb on the host, the test stops"
    started: list[subprocess.Popen[bytes]] = []
    refused = None
    try:
        for _ in range(4 * PIDS):  # a bomb with a bound, limit or not
            try:
                # `cat` waits for its stdin to close: no signal is needed to end it.
                started.append(subprocess.Popen(["cat"], stdin=subprocess.PIPE))
            except OSError as exc:
                refused = exc
                break
    finally:
        for child in started:
            child.communicate()
    assert refused is not None, f"{len(started)} processes started, none refused ({how})"
    assert refused.errno == errno.EAGAIN, f"refused with {refused}, not EAGAIN"
    assert len(started) < PIDS, f"{len(started)} processes started under pids={PIDS}"


@pytest.mark.isolated(memory="512M")
def test_a_memory_hog_is_stopped() -> None:
    how = limit_in_force("memory", resource.RLIMIT_DATA, math.inf)
    assert how, "no memory limit on this process: no memory hog on the host, the test stops"
    # A new Python that fills 1 GiB, byte by byte (so every page is really used). The
    # OOM killer picks by size: the test's own process, a copy of pytest, counts all of
    # pytest's memory, so the hog offers itself first (oom_score_adj 1000, proc(5)) and
    # the limit is well above pytest's size.
    fill = "open('/proc/self/oom_score_adj', 'w').write('1000'); b'x' * (1 << 30)"
    hog = subprocess.run([sys.executable, "-c", fill], capture_output=True)
    killed = hog.returncode == -signal.SIGKILL  # the cgroup's OOM killer
    refused = b"MemoryError" in hog.stderr  # RLIMIT_DATA: the allocation fails
    assert killed or refused, f"the hog ended with {hog.returncode} ({how}): {hog.stderr!r}"


@pytest.mark.isolated(cpu=1)
def test_a_busy_loop_is_stopped() -> None:
    how = limit_in_force(None, resource.RLIMIT_CPU, math.inf)
    assert how, "no cpu limit on this process: no endless loop on the host, the test stops"
    loop = subprocess.run([sys.executable, "-c", "while True: pass"])
    assert loop.returncode == -signal.SIGXCPU, f"the loop ended with {loop.returncode}"
