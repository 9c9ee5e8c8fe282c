"""Lesson 7: shared memory and message queues are private too.

Kernel mechanism, ipc_namespaces(7): System V IPC objects (shared memory segments, message
queues, semaphore sets: sysvipc(7)) and POSIX message queues (mq_overview(7)) are named by
numbers and keys that belong to an IPC namespace. A process sees, attaches and removes only
the objects of its own namespace; /proc/sysvipc/ lists them. A new namespace starts empty,
numbers its objects from 0 again, and when it ends the kernel destroys every object left in
it. pytest-rootless gives each container a new one (CLONE_NEWIPC).

Why it matters: a test cannot read or corrupt the shared memory of a database, a browser
or an X server running on your machine (they use System V segments), and the segments and
queues it forgets to remove do not pile up on the host.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.shmat.restype = ctypes.c_void_p
IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0  # <sys/ipc.h>

#: Evaluated on the host at import: pytest's IPC namespace.
PYTEST_IPC_NS = os.stat("/proc/self/ns/ipc").st_ino


def checked(result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def segments() -> list[int]:
    """The shmid column of /proc/sysvipc/shm: the segments this IPC namespace holds."""
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return [int(line.split()[1]) for line in lines]


def attach(shmid: int) -> str:
    """Try to attach a segment by its number: "attached", or the errno name."""
    address = LIBC.shmat(shmid, None, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        return errno.errorcode.get(ctypes.get_errno(), "?")
    LIBC.shmdt(ctypes.c_void_p(address))
    return "attached"


@pytest.fixture(scope="module")
def host_segment() -> Iterator[int]:
    """A shared memory segment on the host (module-scoped fixtures run there). Attached,
    then marked for removal at once: the kernel frees it when its last user detaches or
    exits, so it cannot outlive this pytest, however pytest ends."""
    shmid = checked(LIBC.shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0o600))
    address = LIBC.shmat(shmid, None, 0)
    checked(LIBC.shmctl(shmid, IPC_RMID, None))
    yield shmid
    LIBC.shmdt(ctypes.c_void_p(address))


@pytest.mark.isolated
def test_the_hosts_segments_are_invisible(host_segment: int) -> None:
    assert host_segment not in segments(), f"the host's segment {host_segment} is listed"
    assert attach(host_segment) == "EINVAL", f"the host's segment {host_segment} attaches"
    assert segments() == [], "the namespace did not start empty"


@pytest.mark.isolated
def test_a_new_namespace_numbers_its_objects_from_zero() -> None:
    assert os.stat("/proc/self/ns/ipc").st_ino != PYTEST_IPC_NS, (
        "this is pytest's own IPC namespace, not a container's: the test stops before "
        "making an object there"
    )
    shmid = checked(LIBC.shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0o600))
    checked(LIBC.shmctl(shmid, IPC_RMID, None))  # never attached: freed at once
    assert shmid == 0, f"the first segment got the number {shmid}: numbered by the host"
