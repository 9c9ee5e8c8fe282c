"""Lesson 3: what root in a user namespace can do, and what it cannot.

Kernel mechanism, user_namespaces(7) and capabilities(7): the kernel checks a capability
against the user namespace that owns the object acted on. With `root=True` the test holds
every capability in its own user namespace, which owns its UTS, network, IPC and mount
namespaces: there it may set the hostname, mount a tmpfs, bind port 80. The clock, device
numbers, the kernel and the host's files belong to the initial user namespace, where the
test holds nothing: EPERM. Mounts it received from a more privileged namespace are locked
(mount_namespaces(7)): it can neither remount them read-write (EPERM) nor unmount them to
see what they cover (EINVAL). And a uid outside its one-line map does not exist for it:
chown(2) to one is EINVAL, and files of unmapped owners show the overflow uid, "nobody".

Why it matters: `root=True` lets a test exercise code that insists on being root (an
installer, a chown, a server on port 80) without giving it any power over your machine.

Each test first checks that it runs in a user namespace of its own: on the host (as with
--rootless-off) the same calls made as real root would change the machine.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.isolated(root=True)

#: Evaluated on the host at import: pytest's user namespace, and your uid out there.
PYTEST_USER_NS = os.stat("/proc/self/ns/user").st_ino
HOST_UID = os.getuid()

LIBC = ctypes.CDLL(None, use_errno=True)
MS_BIND, MS_REMOUNT, MNT_DETACH = 0x1000, 0x20, 2  # <linux/mount.h>


def refuse_outside_a_container() -> None:
    """Stop before any probe if this is still pytest's own user namespace (namespaces(7):
    two processes are in the same namespace when the /proc/<pid>/ns links match)."""
    assert os.stat("/proc/self/ns/user").st_ino != PYTEST_USER_NS, (
        "this is pytest's own user namespace, not a container's: probing what root can do "
        "here could change the host, so the test stops"
    )
    assert os.getuid() == 0, f"uid {os.getuid()}, not root: root=True was not applied"


def outcome(call: Callable[[], object]) -> str:
    """ "ok", or the errno name of the OSError the call raised."""
    try:
        call()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"


def libc_call(name: str, *args: object) -> Callable[[], None]:
    """A libc function without a Python wrapper (mount(2), umount2(2)), raising OSError."""

    def call() -> None:
        if getattr(LIBC, name)(*args) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return call


def test_root_administers_what_its_namespaces_own(tmp_path: Path) -> None:
    refuse_outside_a_container()
    mount_point = str(tmp_path).encode()
    tmpfs = libc_call("mount", b"tmpfs", mount_point, b"tmpfs", 0, None)
    with socket.socket() as server:
        results = {
            "sethostname": outcome(lambda: socket.sethostname("renamed-by-root")),
            "mount tmpfs": outcome(tmpfs),
            "bind port 80": outcome(lambda: server.bind(("127.0.0.1", 80))),
        }
    assert results == dict.fromkeys(results, "ok"), "root could not use its own namespaces"
    assert socket.gethostname() == "renamed-by-root"


def test_root_cannot_undo_the_read_only_view() -> None:
    refuse_outside_a_container()
    remount = libc_call("mount", None, b"/usr", None, MS_REMOUNT | MS_BIND, None)
    results = {
        "remount /usr read-write": outcome(remount),
        "unmount /usr": outcome(libc_call("umount2", b"/usr", MNT_DETACH)),
        "write in /usr": outcome(lambda: Path("/usr/rootless-lesson-3").write_text("x")),
    }
    assert results == {
        "remount /usr read-write": "EPERM",  # a locked mount keeps its flags
        "unmount /usr": "EINVAL",  # a locked mount cannot be taken off what it covers
        "write in /usr": "EROFS",
    }, "root changed the host's read-only files"


def test_root_cannot_touch_what_the_host_owns(tmp_path: Path) -> None:
    refuse_outside_a_container()
    device = tmp_path / "null"
    results = {
        "set the clock": outcome(lambda: time.clock_settime(time.CLOCK_REALTIME, time.time())),
        "make a device node": outcome(
            lambda: os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        ),
        "write a sysctl": outcome(lambda: Path("/proc/sys/kernel/hostname").write_text("x")),
    }
    assert results == {
        "set the clock": "EPERM",  # CAP_SYS_TIME counts only in the initial user namespace
        "make a device node": "EPERM",  # CAP_MKNOD too
        "write a sysctl": "EROFS",  # /proc/sys is a read-only bind, root or not
    }, "root reached beyond its namespaces"


def test_uids_outside_the_map_do_not_exist(tmp_path: Path) -> None:
    refuse_outside_a_container()
    mine = tmp_path / "mine"
    mine.write_text("")
    assert outcome(lambda: os.chown(mine, 1234, 1234)) == "EINVAL", "uid 1234 is mapped"
    # /usr belongs to the host's root: unless you are that root, its owner is unmapped.
    overflow = int(Path("/proc/sys/kernel/overflowuid").read_text())
    expected = 0 if HOST_UID == 0 else overflow
    assert os.stat("/usr").st_uid == expected, "the host's root is visible as itself"
