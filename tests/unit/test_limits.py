"""The limits backend against a fake host: its /proc files and a plain directory standing
for the cgroup filesystem (the real one is exercised in tests/e2e/test_limits.py)."""

from __future__ import annotations

import errno
import signal
from pathlib import Path

import pytest

from pytest_rootless.runtime import limits
from pytest_rootless.runtime.options import validate

MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 /user.slice /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
CGROUP = """\
8:pids:/
4:memory:/box/inner
0::/user.slice/user@1000.service/app.slice
"""
V2 = "/sys/fs/cgroup/unified/user@1000.service/app.slice"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A simulated host: its /proc/self files, and its cgroups as plain directories."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(MOUNTINFO)
    (tmp_path / "proc/self/cgroup").write_text(CGROUP)
    for directory in (V2, "/sys/fs/cgroup/memory/box/inner", "/sys/fs/cgroup/pids"):
        (tmp_path / directory.lstrip("/")).mkdir(parents=True)
    return tmp_path


def test_places_are_v2_first_then_v1_under_our_own_cgroup(host: Path) -> None:
    def found(controller: str) -> list[tuple[int, str | None]]:
        return [(p.version, p.directory) for p in limits.places(controller, str(host))]

    assert found("memory") == [(2, V2), (1, "/sys/fs/cgroup/memory/box/inner")]
    assert found("pids") == [(2, V2), (1, "/sys/fs/cgroup/pids")]


def test_a_place_whose_directory_is_missing_is_not_shown(host: Path) -> None:
    (host / "sys/fs/cgroup/pids").rmdir()
    [v2, v1] = limits.places("pids", str(host))
    assert (v2.directory, v1.directory) == (V2, None)
    assert not v1.delegated(str(host))


def test_without_trials_the_files_decide(host: Path) -> None:
    """v2 needs the controller enabled for children; v1 only write access."""
    (host / V2.lstrip("/") / "cgroup.subtree_control").write_text("memory\n")
    for directory in (V2, "/sys/fs/cgroup/pids"):
        (host / directory.lstrip("/") / "cgroup.procs").write_text("")
    backend = limits.detect(str(host), trial=False, uid=1000)
    assert backend.memory == limits.Hierarchy("memory", 2, str(host) + V2)
    assert backend.pids == limits.Hierarchy("pids", 1, f"{host}/sys/fs/cgroup/pids")
    assert backend.nproc_works
    assert not limits.detect(str(host), trial=False, uid=0).nproc_works


def test_a_plain_directory_is_not_a_usable_cgroup(tmp_path: Path) -> None:
    # mkdir works, but no limit file appears in it: the kernel did not make it
    assert not limits._usable("memory", 1, str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # the trial cgroup is removed


@pytest.mark.parametrize(
    ("version", "limit", "events", "line"),
    [
        (2, "memory.max", "memory.events", "oom_kill 3"),
        (1, "memory.limit_in_bytes", "memory.oom_control", "oom_kill 3"),
    ],
)
def test_cgroup_made_limited_counted_and_removed(
    tmp_path: Path, version: int, limit: str, events: str, line: str
) -> None:
    backend = limits.Backend(
        memory=limits.Hierarchy("memory", version, str(tmp_path)), pids=None, nproc_works=True
    )
    cgroups = limits.Cgroups.make(backend, validate({"memory": "64M"}), "7")
    [path] = cgroups.paths.values()
    assert (Path(path) / limit).read_text() == str(64 << 20)
    assert cgroups.procs_files == (f"{path}/cgroup.procs",)
    (Path(path) / events).write_text(f"oom_kill_disable 0\nunder_oom 0\n{line}\n")
    assert cgroups.hits() == {"memory": 3}
    for name in (limit, events):
        (Path(path) / name).unlink()
    assert cgroups.remove()
    assert cgroups.counted == {"memory": 3}  # kept once removed
    assert list(tmp_path.iterdir()) == []


def test_rlimits_where_no_cgroup_is_writable() -> None:
    backend = limits.Backend(memory=None, pids=None, nproc_works=True)
    process_limits = limits.ProcessLimits.of(
        backend, validate({"memory": "1G", "pids": 9, "cpu": 2.5})
    )
    expected = limits.ProcessLimits(data_growth=1 << 30, nproc=9, cpu=2.5)
    assert process_limits == expected
    assert "memory by RLIMIT_DATA, per process" in backend.header()


def test_a_limit_that_cannot_be_enforced_is_an_error_not_ignored() -> None:
    """Real root is exempt from RLIMIT_NPROC (kernel/fork.c): without a cgroup, a pids
    limit must be refused."""
    backend = limits.Backend(memory=None, pids=None, nproc_works=False)
    problem = backend.check(validate({"pids": 10}))
    assert problem is not None
    assert "pids=10 cannot be enforced" in problem
    assert backend.check(validate({"memory": "1G", "cpu": 3})) is None


def test_explanations_name_the_limit_and_its_value() -> None:
    backend = limits.Backend(memory=None, pids=None, nproc_works=True)
    options = validate({"memory": "64M", "pids": 8, "cpu": 2})
    assert limits.hit_lines(options, backend, {}, exception=MemoryError()) == [
        "the memory limit memory=64M was reached (RLIMIT_DATA, per process): an allocation failed"
    ]
    assert limits.hit_lines(options, backend, {"pids": 4}) == [
        "the pids limit pids=8 was reached (RLIMIT_NPROC, the whole container): 4 fork(s) refused"
    ]
    assert limits.hit_lines(options, backend, {}, signum=signal.SIGXCPU) == [
        "the cpu limit cpu=2s was reached (RLIMIT_CPU, per process)"
    ]
    eagain = BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    assert "pids=8" in limits.hit_lines(options, backend, {}, exception=eagain)[0]
    assert limits.hit_lines(validate({}), backend, {}, exception=eagain) == []
