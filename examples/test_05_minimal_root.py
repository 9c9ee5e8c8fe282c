"""Lesson 5: a minimal root of its own, entered with pivot_root, not chroot.

Kernel mechanism, pivot_root(2): the container's root is a fresh tmpfs holding only what a
test needs: read-only binds of /usr, the Python installation, the project and a short list
of /etc files; a fresh /tmp, /var/tmp, /dev/shm and HOME; a fresh /proc and a handful of
/dev nodes. init then calls pivot_root(".", ".") to make that tmpfs the root of its whole
mount namespace, and detaches the old root with umount2(2) (MNT_DETACH): the host's tree is
no longer mounted anywhere the container could reach.

chroot(2) is not the same thing: it changes one process's idea of "/", nothing else. A
process with CAP_SYS_CHROOT that chroots into a subdirectory while its working directory
stays outside can walk up with ".." past the old root and chroot there: the classic chroot
escape. After pivot_root and the detach there is nothing above the new root: the same
escape, tried with `root=True`, lands at the container's own "/".

Why it matters: the test finds no secrets (/etc/shadow, ssh keys), no daemons' sockets
(/run), no other users' homes, because they are not there at all, not because a permission
says no; and there is no way back up to them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

#: Evaluated on the host at import: the device of the host's root filesystem, as
#: proc_pid_mountinfo(5) writes it ("major:minor"), and pytest's user namespace.
HOST_ROOT_DEVICE = f"{os.major(os.stat('/').st_dev)}:{os.minor(os.stat('/').st_dev)}"
PYTEST_USER_NS = os.stat("/proc/self/ns/user").st_ino

#: What a host has and a test does not need; none of it is in the container.
HOST_ONLY = (
    "/etc/shadow",
    "/etc/sudoers",
    "/etc/ssh",
    "/run",
    "/sys",
    "/boot",
    "/mnt",
    "/media",
    "/srv",
    "/var/lib",
    "/var/log",
)


def mounts() -> list[tuple[str, str, str, str]]:
    """(device, root, mount point, fs type) of each line of /proc/self/mountinfo."""
    table = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        _, _, device, root, mount_point = fields.split()[:5]
        table.append((device, root, mount_point, tail.split()[0]))
    return table


@pytest.mark.isolated
def test_what_a_test_needs_is_there(pytestconfig: pytest.Config) -> None:
    python = subprocess.run([sys.executable, "-c", "print('hi')"], capture_output=True)
    assert python.stdout == b"hi\n", "the running Python does not start"
    assert pytestconfig.rootpath.is_dir(), "the project is missing"
    assert Path("/usr/bin/env").exists()
    passwd = Path("/etc/passwd").read_text()
    assert f":{os.getuid()}:" in passwd, "/etc/passwd does not name the test's user"
    assert socket.gethostname() in Path("/etc/hosts").read_text().split()


@pytest.mark.isolated
def test_what_the_host_keeps_is_not() -> None:
    present = [path for path in HOST_ONLY if os.path.lexists(path)]
    assert present == [], f"the host's files are in the container: {present}"


@pytest.mark.isolated
def test_the_root_is_a_fresh_read_only_tmpfs() -> None:
    root = [(fs, mount_point) for _, _, mount_point, fs in mounts() if mount_point == "/"]
    assert root[-1][0] == "tmpfs", f"/ is the host's {root[-1][0]} file system"
    assert os.statvfs("/").f_flag & os.ST_RDONLY, "/ is writable"


@pytest.mark.isolated
def test_the_hosts_root_is_mounted_nowhere() -> None:
    # The binds show parts of the host's root file system ("/usr", "/etc/ssl/certs"), each
    # with its own root in mountinfo's 4th field; the whole of it ("/") is gone.
    host_root = (HOST_ROOT_DEVICE, "/")
    whole = [point for device, root, point, _ in mounts() if (device, root) == host_root]
    assert whole == [], f"the host's root file system is mounted at {whole}"


ESCAPE = """
import json, os
os.makedirs("jail", exist_ok=True)
os.chroot("jail")               # "/" is now ./jail, but the working directory stays outside
for _ in range(64):
    os.chdir("..")              # walks up past ./jail: nothing stops ".." outside the chroot
os.chroot(".")                  # "/" is now the top that ".." reached
print(json.dumps(sorted(os.listdir("/"))))
"""


@pytest.mark.isolated(root=True)  # chroot(2) needs CAP_SYS_CHROOT
def test_the_chroot_escape_leads_back_to_the_container(tmp_path: Path) -> None:
    assert os.stat("/proc/self/ns/user").st_ino != PYTEST_USER_NS, (
        "this is pytest's own user namespace, not a container's: a chroot escape here would "
        "reach the host's root, so the test stops"
    )
    escaped = subprocess.run(
        [sys.executable, "-c", ESCAPE], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    top = json.loads(escaped.stdout)
    assert top == sorted(os.listdir("/")), f"the escape reached another root: {top}"
    assert "sys" not in top, f"the escape reached the host's root: {top}"
