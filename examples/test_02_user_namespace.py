"""Lesson 2: you are yourself, without any privilege; or root, but only in here.

Kernel mechanism, user_namespaces(7): a user namespace has its own uids, gids and
capabilities, translated to the outside through /proc/<pid>/uid_map and gid_map (lines of
"inside outside count"). An unprivileged user may write one line, mapping one id: its own.
pytest-rootless maps your uid to itself, drops every capability of the test process (the
effective, permitted, inheritable, ambient and bounding sets of capabilities(7): CapEff 0)
and sets no_new_privs, so no setuid program can give any back. With `root=True` the map is
"0 <your uid> 1": uid 0 in here is you out there, and the test keeps every capability, each
valid only over what its own namespaces own (lesson 3 tries them).

Why it matters: the test sees the same identity as without isolation, and even a test run by
a root CI job holds no power over the machine.
"""

from __future__ import annotations

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
    assert uid_map() == [[HOST_UID, HOST_UID, 1]], f"the uid map is {uid_map()}, not one line"


@pytest.mark.isolated(root=True)
def test_root_in_here_is_me_out_there() -> None:
    assert os.getuid() == 0, f"uid {os.getuid()}, not root: no user namespace mapped uid 0"
    assert uid_map() == [[0, HOST_UID, 1]], f"the uid map is {uid_map()}: not root onto you"


@pytest.mark.isolated(root=True)
def test_root_in_here_holds_every_capability() -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    every = (1 << (last + 1)) - 1  # one bit per capability, 0..cap_last_cap
    assert uid_map() != [[0, 0, 4294967295]], "this is the host's own root, not a mapped one"
    assert int(status("CapEff"), 16) == every, f"CapEff {status('CapEff')}: not every one"
