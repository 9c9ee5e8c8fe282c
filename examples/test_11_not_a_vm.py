"""Lesson 11: a container is not a virtual machine: one kernel, one clock, for everyone.

Kernel mechanism, namespaces(7): a namespace wraps one kind of global resource (process
ids, mounts, network, hostname, IPC, user ids, cgroup paths, clocks) so that its members
see their own instance. Everything else is shared, because there is only one kernel: the
container's processes are ordinary processes of the host's kernel, making system calls to
it. uname(2) reports that kernel's release; its boot id, its modules (/proc/modules, loaded
only by CAP_SYS_MODULE in the initial user namespace) and its clocks are the same inside.
Time namespaces exist (time_namespaces(7), Linux 5.6: offsets for CLOCK_MONOTONIC and
CLOCK_BOOTTIME, never for the wall clock) but pytest-rootless does not use one, and it
keeps the cgroup namespace too, so /proc/self/cgroup shows the host's paths (lesson 10).
A virtual machine runs a kernel of its own on emulated hardware: none of this holds there.

Why it matters: isolation is only as strong as the one kernel everyone shares: a kernel
bug is a way out of every container at once, which is why a container keeps the kernel's
attack surface small (no capabilities, a seccomp filter, read-only /proc/sys). And tests
that depend on the kernel (its version, its modules, its clock) see the host's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.isolated

#: The namespaces a container gets new, and the ones it keeps (namespaces(7) lists all).
NEW = ("user", "mnt", "pid", "net", "uts", "ipc")
KEPT = ("time", "cgroup")


def namespace_ids() -> dict[str, int]:
    """Each namespace of this process, as the inode of its /proc/self/ns link."""
    return {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in (*NEW, *KEPT)}


def module_names() -> list[str] | None:
    """The loaded modules, or None for a kernel built without module support."""
    try:
        return sorted(line.split()[0] for line in Path("/proc/modules").read_text().splitlines())
    except FileNotFoundError:
        return None


@pytest.fixture(scope="module")
def host() -> dict[str, Any]:
    """What the host sees, taken on the host (module-scoped fixtures run there)."""
    return {
        "uname": os.uname(),
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text(),
        "modules": module_names(),
        "namespaces": namespace_ids(),
        "boottime": time.clock_gettime(time.CLOCK_BOOTTIME),
        "time": time.time(),
    }


def test_the_kernel_is_the_hosts(host: dict[str, Any]) -> None:
    here = os.uname()
    assert here.release == host["uname"].release, "another kernel release: a VM?"
    assert here.version == host["uname"].version, "another kernel build: a VM?"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text()
    assert boot_id == host["boot_id"], "another boot of the kernel: a VM?"


def test_the_kernel_modules_are_the_hosts(host: dict[str, Any]) -> None:
    # None on both sides for a kernel without modules: absent alike, for the same reason.
    assert module_names() == host["modules"], "another list of kernel modules: a VM?"


def test_the_clocks_are_the_hosts(host: dict[str, Any]) -> None:
    assert namespace_ids()["time"] == host["namespaces"]["time"], "a time namespace of its own"
    # Same clocks, read later: never behind the host's reading (a VM's boot clock would
    # start near zero, a time namespace could shift it).
    assert time.clock_gettime(time.CLOCK_BOOTTIME) >= host["boottime"], "the boot clock moved"
    assert time.time() >= host["time"], "the wall clock is behind the host's"


def test_which_namespaces_are_new(host: dict[str, Any]) -> None:
    here = namespace_ids()
    shared = [name for name in NEW if here[name] == host["namespaces"][name]]
    assert shared == [], f"these namespaces are the host's, not new ones: {shared}"
    new = [name for name in KEPT if here[name] != host["namespaces"][name]]
    assert new == [], f"these namespaces were expected to be the host's: {new}"
