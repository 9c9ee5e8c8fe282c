"""Lesson 13: a test may scribble over the project and /etc; the host never sees it.

Kernel mechanism, overlayfs (the kernel's Documentation/filesystems/overlayfs.rst; mount(2)
with type "overlay", allowed in a user namespace since Linux 5.11 with the `userxattr`
option): `writable=[paths]` mounts, over each path, a union of two layers. The lower layer
is what the container would see there (the project, read-only); the upper layer is a fresh
directory on a tmpfs that only the container's init can reach. Reading finds a file in the
upper layer first, then in the lower one; writing copies a file up first ("copy-up");
deleting leaves a "whiteout" (a 0/0 character device) in the upper layer. So the upper
layer is an exact record of what the test changed: `container.changes()` reads it.

Why it matters: a suite that writes into its own tree (build outputs, caches, generated
files) runs unchanged, and a second test, or the next run, still finds the tree as it was.
The same record finds tests that depend on leftovers or leave them
(`--rootless-report-writes`).
"""

import hashlib
import os
from pathlib import Path

import pytest

import pytest_rootless

#: This lesson's own file, and what it holds, seen from the host at import.
LESSON = Path(__file__).resolve()
FINGERPRINT = hashlib.sha256(LESSON.read_bytes()).hexdigest()
SCRIBBLE = LESSON.parent / "scribbled-by-lesson-12.txt"


def overlay_at(path: Path) -> bool:
    """Whether `path` is an overlay mount point, from proc_pid_mountinfo(5)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        if fields.split()[4] == str(path) and tail.split()[0] == "overlay":
            return True
    return False


@pytest.mark.isolated(writable=[str(LESSON.parent), "/etc"])
def test_scribble_over_the_project_and_etc() -> None:
    # Without isolation these writes would reach your checkout: refuse, saying why.
    assert overlay_at(LESSON.parent), f"{LESSON.parent} is not a copy-on-write view here"
    assert overlay_at(Path("/etc")), "/etc is not a copy-on-write view here"

    LESSON.write_text("# overwritten\n")  # copied up, then changed
    SCRIBBLE.write_text("a new file in the project\n")
    Path("/etc/motd-from-lesson-12").write_text("hello\n")

    assert LESSON.read_text() == "# overwritten\n"  # the test sees its own writes
    assert SCRIBBLE.exists()


def test_nothing_reached_the_host() -> None:
    """Runs on the host, after the test above."""
    changed = hashlib.sha256(LESSON.read_bytes()).hexdigest() != FINGERPRINT
    assert not changed, f"{LESSON} was overwritten on the host"
    assert not SCRIBBLE.exists(), f"{SCRIBBLE} reached the host"
    assert not os.path.exists("/etc/motd-from-lesson-12"), "a file reached the host's /etc"


@pytest.mark.container(writable=["/etc"])
def test_changes_as_an_assertion_tool(container: pytest_rootless.Container) -> None:
    """What did "installing" this configuration touch? Exactly what the upper layer holds."""

    def install() -> None:
        Path("/etc/app.conf").write_text("debug = false\n")
        os.remove("/etc/hostname")

    container.run(install)
    changes = container.changes()
    assert changes == {"/etc/app.conf": "added", "/etc/hostname": "deleted"}, changes
