"""Lesson 5: you are yourself, without any privilege; or root only in here.

Kernel mechanism, user_namespaces(7): a user namespace has its own uids, gids and
capabilities, translated to the outside through /proc/<pid>/uid_map and gid_map (lines of
"inside outside count"). An unprivileged user may map exactly one id: its own. Capabilities
held in a user namespace act only on what that namespace owns (its mounts, hostname,
network), never on the host. pytest-rootless maps your uid to itself and drops every
capability of the test process (CapEff 0) and sets no_new_privs, so no setuid program can
give any back. With `root=True` the map is "0 <your uid> 1": root in here, you out there.

Why it matters: the test sees the same identity as without isolation, and even a test run by
a root CI job holds no power over the machine.
"""

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.isolated

#: Evaluated on the host, when pytest imports this module: your uid out there.
HOST_UID = os.getuid()


def status(field: str) -> str:
    """One field of /proc/self/status, e.g. "CapEff" → "0000000000000000"."""
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return value.strip()
    raise LookupError(field)


def uid_map() -> list[list[int]]:
    """/proc/self/uid_map as [[inside, outside, count], ...]."""
    lines = Path("/proc/self/uid_map").read_text().splitlines()
    return [[int(number) for number in line.split()] for line in lines]


def test_i_am_my_own_uid_without_capabilities() -> None:
    assert os.getuid() == HOST_UID, "the uid differs from the one on the host"
    assert int(status("CapEff"), 16) == 0, f"capabilities held: CapEff {status('CapEff')}"
    assert status("NoNewPrivs") == "1", "setuid programs could still raise privileges"


def test_only_my_uid_is_mapped() -> None:
    assert uid_map() == [[HOST_UID, HOST_UID, 1]], "every uid of the host is mapped"


@pytest.mark.isolated(root=True)
def test_root_in_here_is_me_out_there() -> None:
    assert os.getuid() == 0, "not root"
    assert uid_map() == [[0, HOST_UID, 1]], "not a one-uid map of root onto the host uid"
