"""The course in examples/, as a newcomer runs it: copied into a fresh directory (no ini
file of ours but ``filterwarnings = error``) and run with ``-p rootless``, isolated and
then with ``--rootless-off``. Isolated, every lesson passes. Without isolation, the lessons
that assert isolation fail, each with a message that says what the host shows instead, and
neither run leaves anything behind: no file in the course, in /tmp or in /etc, no process,
no System V IPC object, the same hostname.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_rootless.runtime import limits
from pytest_rootless.runtime.options import validate

from .. import procscan

EXAMPLES = Path(__file__).parents[2] / "examples"
LESSONS = sorted(p.name for p in EXAMPLES.glob("test_*.py"))

#: Where pytest runs as real root without a writable pids cgroup, a pids limit cannot be
#: enforced: lesson 10's fork bomb then errors at setup, saying so (docs/filesystems-and-limits.md).
PIDS_REFUSED = limits.detect().check(validate({"pids": 16}))

#: The names the lessons give what they write in /tmp (with or without isolation).
TMP_NAMES = re.compile(r"rootless-example|lesson", re.IGNORECASE)

#: Lessons whose tests all pass on the host too: what is not isolated, and containers
#: driven through the ``container`` fixture, which --rootless-off does not turn off.
PASS_WITHOUT_ISOLATION = {
    "test_09_private_network.py",  # containers of its own: --rootless-off does not apply
    "test_12_container_fixture.py",
    "test_14_rootless.py",
}

#: How long the kernel may take to tear a container down. Only an upper bound for polling.
GONE_WITHIN = 10.0


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (bytecode caches aside) with a hash of its content."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def ipc_ids() -> set[str]:
    """Every System V IPC object of this IPC namespace, as "kind:id" (sysvipc(7))."""
    found = set()
    for kind in ("shm", "msg", "sem"):
        lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        found |= {f"{kind}:{line.split()[1]}" for line in lines}
    return found


@dataclass
class Host:
    """What the course could leave behind, looked at before and after a run."""

    course: dict[str, str]
    tmp: set[str]
    etc: set[str]
    ipc: set[str]
    hostname: str

    @classmethod
    def look(cls, course: Path) -> Host:
        return cls(
            tree(course),
            {name for name in os.listdir("/tmp") if TMP_NAMES.search(name)},
            set(os.listdir("/etc")),
            ipc_ids(),
            socket.gethostname(),
        )


@pytest.fixture
def course(pytester: pytest.Pytester) -> Path:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    copy = pytester.path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def run_course(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, course: Path, *args: str
) -> pytest.RunResult:
    """Run the course; then check the host is as it was, and no process of the run is left."""
    token = f"course-{uuid.uuid4().hex}"
    monkeypatch.setenv("ROOTLESS_COURSE_RUN", token)
    before = Host.look(course)
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider", *args)
    # the inner pytest's children inherit the token in their environment
    left = procscan.gone(token, GONE_WITHIN, environ=True)
    assert left == {}, f"processes of the course outlived it: {left}"
    after = Host.look(course)
    assert after.course == before.course, "the course's own files changed"
    assert after.tmp - before.tmp == set(), "the course left files in /tmp"
    assert after.etc == before.etc, "the course changed what /etc holds"
    assert after.ipc - before.ipc == set(), "the course left System V IPC objects"
    assert after.hostname == before.hostname, "the course renamed the host"
    return result


def test_the_course_passes_from_a_fresh_directory(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, course: Path
) -> None:
    result = run_course(pytester, monkeypatch, course, "examples")
    outcomes = result.parseoutcomes()
    errors = 1 if PIDS_REFUSED else 0  # lesson 10's fork bomb, saying why
    collected = int(re.search(r"collected (\d+) items", result.stdout.str()).group(1))  # type: ignore[union-attr]
    assert collected > len(LESSONS)  # several facts per lesson
    assert outcomes == {"passed": collected - errors, **({"errors": 1} if errors else {})}, (
        result.stdout.str()
    )
    if PIDS_REFUSED:
        result.stdout.fnmatch_lines(["*test_a_fork_bomb_is_stopped*pids=16 cannot be enforced*"])


def test_without_isolation_each_failure_says_why(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, course: Path
) -> None:
    result = run_course(
        pytester, monkeypatch, course, "--rootless-off", "--junitxml=course.xml", "examples"
    )
    result.stdout.fnmatch_lines(
        ["rootless: OFF (--rootless-off)*", "*WARNING: --rootless-off: * ran WITHOUT it*"]
    )
    cases = ET.parse(pytester.path / "course.xml").getroot().iter("testcase")
    failed: dict[str, list[str]] = {}
    for case in cases:
        assert case.find("error") is None, f"{case.get('name')} errored: not a lesson's answer"
        failure = case.find("failure")
        if failure is not None:
            lesson = f"{case.get('classname', '').rpartition('.')[2]}.py"
            failed.setdefault(lesson, []).append(f"{case.get('name')}: {failure.get('message')}")
    # Every lesson that asserts isolation shows it by failing...
    assert set(failed) >= set(LESSONS) - PASS_WITHOUT_ISOLATION, sorted(failed)
    # ...and each failure is the lesson's own sentence, not a bare comparison.
    for lesson, messages in failed.items():
        for message in messages:
            name, _, text = message.partition(": ")
            first = text.splitlines()[0] if text else ""
            explained = re.fullmatch(r"AssertionError: (?!assert )\S.{10,}", first)
            assert explained, f"{lesson}::{name} fails without saying why: {text!r}"
    # A few of them, word for word: the host's view, shown where isolation would be.
    result.stdout.re_match_lines_random(
        [
            r"E +AssertionError: the parent is not the container's init: no PID namespace",
            r"E +AssertionError: '.*' is the machine's own hostname",
            r"E +AssertionError: this is pytest's own user namespace, not a container's: .*",
            r"E +AssertionError: no pids limit on this process: no fork bomb on the host, .*",
            r"E +AssertionError: these namespaces are the host's, not new ones: \['user', .*",
        ]
    )


def test_the_trace_of_one_lesson_reads_stage_by_stage(
    pytester: pytest.Pytester, course: Path
) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "rootless", "--rootless-trace", "examples/test_06_uts_namespace.py", "-k", "marker"
    )
    result.assert_outcomes(passed=1, deselected=1)
    # Each stage's heading, then its steps in order ("[[]" is a literal "[" for fnmatch).
    result.stdout.fnmatch_lines(
        [
            line.replace("[", "[[]")
            for line in [
                "rootless trace examples/test_06_uts_namespace.py::"
                "test_the_marker_chooses_the_hostname:",
                "  # user namespace (user_namespaces(7)): *",
                "  [host] clone(CLONE_NEWNS|CLONE_NEWUSER|CLONE_NEWPID|SIGCHLD) = *",
                "  [init] write(/proc/self/uid_map, '* * 1')",
                "  # root filesystem (mount_namespaces(7)): *",
                "  [init] mount(None, '/', None, MS_REC|MS_PRIVATE)",
                "  [init] mount_setattr('/tmp/usr', AT_RECURSIVE, MOUNT_ATTR_RDONLY)",
                "  [init] pivot_root('.', '.')",
                "  # inner namespaces (namespaces(7)): *",
                "  [init] unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|*",
                "  [init] sethostname('lab1')",
                "  # test process (capabilities(7), seccomp(2)): *",
                "  [test] setsid()",
                "  [test] prctl(PR_SET_NO_NEW_PRIVS, 1)",
            ]
        ]
    )
    # One heading per stage, and every other line a step: compact enough to read.
    trace = result.stdout.str().split("rootless trace ", 1)[1].splitlines()[1:]
    trace = trace[: next(i for i, line in enumerate(trace) if not line.startswith("  "))]
    assert len([line for line in trace if line.startswith("  # ")]) == 4, trace
    assert all(line.startswith(("  # ", "  [")) for line in trace), trace
