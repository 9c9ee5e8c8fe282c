"""Limits on the whole container: a fork bomb, a memory bomb and a busy loop are
each stopped, reported with the limit and its value, and the session goes on. As real root
here the kernel's cgroups enforce memory and pids; unprivileged, rlimits do. The header
says which."""

from __future__ import annotations

import os
import subprocess

import pytest

from pytest_rootless.runtime import limits, stale
from pytest_rootless.runtime.options import format_size, validate

#: Real root with no writable pids cgroup cannot have a pids limit (RLIMIT_NPROC does not
#: bind it): those runs check the refusal instead of the limit.
PIDS_REFUSED = limits.detect().check(validate({"pids": 8}))
needs_pids = pytest.mark.skipif(PIDS_REFUSED is not None, reason=str(PIDS_REFUSED))

BOMBS = """
import os, time
import pytest

@pytest.mark.isolated(pids=8)
def test_fork_bomb():
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)

@pytest.mark.isolated(memory="64M")
def test_memory_bomb():
    hoard = []
    while True:
        hoard.append(bytearray(8 << 20))

@pytest.mark.isolated(cpu=1)
def test_busy_loop():
    while True:
        pass

@pytest.mark.isolated(pids=8, memory="64M", cpu=1)
def test_within_the_limits():
    assert os.fork() or os._exit(0)
    assert len(bytearray(16 << 20)) == 16 << 20

def test_the_session_goes_on():
    pass
"""


@needs_pids
def test_each_limit_stops_its_bomb_and_names_itself(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BOMBS)
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(failed=3, passed=2)
    result.stdout.re_match_lines(
        [r"rootless: limits: memory by (cgroup v[12]|RLIMIT_DATA).*; pids by .*; cpu by RLIMIT_CPU"]
    )
    result.stdout.re_match_lines_random(
        [
            r".*the pids limit pids=8 was reached \((cgroup v[12]|RLIMIT_NPROC).*",
            r".*the memory limit memory=64M was reached \((cgroup v[12]|RLIMIT_DATA).*",
            r".*the cpu limit cpu=1s was reached \(RLIMIT_CPU, per process\).*",
        ]
    )


@needs_pids
def test_limits_from_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrootless_pids = 6\n")
    pytester.makepyfile(
        """
        import os, time, pytest

        @pytest.mark.isolated
        def test_bomb():
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the pids limit pids=6 was reached*"])


@needs_pids
def test_pids_counts_the_container_only(pytester: pytest.Pytester) -> None:
    """Twenty processes of ours on the host do not count against a container's pids=8."""
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(20)]
    try:
        pytester.makepyfile(
            """
            import os, time, pytest

            @pytest.mark.isolated(pids=8)
            def test_three_children():
                children = []
                for _ in range(3):
                    pid = os.fork()
                    if pid == 0:
                        time.sleep(0.5)
                        os._exit(0)
                    children.append(pid)
                for pid in children:
                    os.waitpid(pid, 0)
            """
        )
        result = pytester.runpytest_subprocess("-p", "rootless")
        result.assert_outcomes(passed=1)
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()


@needs_pids
def test_limits_of_a_live_container(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, time
        import pytest
        from pytest_rootless import RemoteError

        def hoard():
            blocks = []
            while True:
                blocks.append(bytearray(8 << 20))

        def bomb():
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)

        def test_memory(container_factory):
            box = container_factory(memory="64M")
            with pytest.raises((MemoryError, RemoteError)) as info:
                box.run(hoard)
            said = str(info.value) + "".join(getattr(info.value, "__notes__", []))
            assert "the memory limit memory=64M was reached" in said
            assert box.run(lambda: "still up") == "still up"

        def test_pids(container_factory):
            box = container_factory(pids=8)
            with pytest.raises(BlockingIOError) as info:
                box.run(bomb)
            assert "the pids limit pids=8 was reached" in "".join(info.value.__notes__)

        @pytest.mark.container(cpu=1)
        def test_cpu(container):
            with pytest.raises(RemoteError, match="the cpu limit cpu=1s was reached"):
                container.run(lambda: [None for _ in iter(int, 1)])
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=3)


def test_no_cgroup_is_left_behind(pytester: pytest.Pytester) -> None:
    backend = limits.detect()
    parents = {h.parent for h in (backend.memory, backend.pids) if h is not None}
    if not parents:
        pytest.skip("no writable cgroup here: limits are rlimits, nothing to leave behind")
    pytester.makepyfile(BOMBS)
    pytester.runpytest_subprocess("-p", "rootless")
    ours = [
        name
        for parent in parents
        for name in os.listdir(parent)
        if name.startswith(stale.PREFIX) and not name.startswith(f"{stale.PREFIX}{os.getpid()}-")
    ]
    alive = [name for name in ours if stale.session_alive(int(name.split("-")[2]))]
    assert sorted(set(ours) - set(alive)) == []


@pytest.mark.skipif(PIDS_REFUSED is None, reason="pids limits can be enforced here")
def test_a_pids_limit_that_cannot_be_enforced_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.isolated(pids=8)
        def test_limited():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pids=8 cannot be enforced*"])


RUNAWAY = """
import pytest

@pytest.mark.isolated
def test_runaway():
    hoard = []
    while len(hoard) < 128:  # 1 GiB, bounded: a run with no ceiling must not hurt the host
        hoard.append(bytearray(8 << 20))

@pytest.mark.isolated
def test_normal():
    assert len(bytearray(16 << 20)) == 16 << 20

@pytest.mark.isolated(memory="512M")
def test_own_limit_wins():
    assert len(bytearray(200 << 20)) == 200 << 20
"""


def test_a_default_memory_ceiling_stops_a_runaway_and_names_itself(
    pytester: pytest.Pytester,
) -> None:
    """A container with no memory option has the default ceiling (ini
    rootless_default_memory): a runaway fails naming it, the session goes on; its own
    memory= limit replaces it."""
    pytester.makeini("[pytest]\nrootless_default_memory = 128M\n")
    pytester.makepyfile(RUNAWAY)
    result = pytester.runpytest_subprocess("-p", "rootless", timeout=300)
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.re_match_lines(
        [r"rootless: limits: .*; default memory ceiling: 128M per process where no memory= .*"]
    )
    result.stdout.fnmatch_lines(
        ["*the default memory ceiling rootless_default_memory=128M was reached (RLIMIT_DATA*"]
    )


def test_the_default_memory_ceiling_is_half_the_ram_and_can_be_off(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess("-p", "rootless")
    half = limits.default_ceiling()
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert ram // 2 - (1 << 30) < half <= ram // 2 or half == 1 << 20
    result.stdout.fnmatch_lines(
        [f"rootless: limits: *; default memory ceiling: {format_size(half)} per process*"]
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "-o", "rootless_default_memory=none")
    result.stdout.fnmatch_lines(["rootless: limits: *; default memory ceiling: none *"])
    result = pytester.runpytest_subprocess("-p", "rootless", "-o", "rootless_default_memory=lots")
    result.stderr.fnmatch_lines(["*rootless_default_memory='lots' is invalid*"])
