"""The Landlock tier's pieces that need no sandbox: the kernel's ABI, the rights and scopes
each ABI can restrict, what the header says is missing, the short cause."""

from __future__ import annotations

import errno

import pytest

from pytest_rootless.kernel import landlock
from pytest_rootless.kernel.libc import SyscallError
from pytest_rootless.runtime.landlock import Tier, short_cause


def test_the_kernel_reports_its_abi() -> None:
    try:
        abi = landlock.landlock_abi_version()
    except SyscallError as exc:
        pytest.skip(landlock.unavailable_reason(exc.errno or 0))
    assert abi >= 1


def test_rights_and_scopes_follow_the_abi() -> None:
    assert landlock.AccessFs.REFER not in landlock.write_rights(1)
    assert landlock.AccessFs.TRUNCATE in landlock.write_rights(3)
    assert landlock.AccessFs.READ_FILE not in landlock.write_rights(7)
    assert landlock.scopes(5) == 0
    assert landlock.scopes(6) == landlock.Scope.SIGNAL | landlock.Scope.ABSTRACT_UNIX_SOCKET


def test_the_header_names_what_an_old_abi_lacks() -> None:
    line = Tier(5).describe("user namespaces refused by seccomp")
    assert line.startswith("isolation: landlock ABI 5 (user namespaces refused by seccomp)")
    assert "MISSING with Landlock ABI 5 (needs 6, Linux 6.12): signal scoping" in line
    assert "abstract unix socket scoping" in line
    assert "MISSING" not in Tier(6).describe("x")
    assert "REFER" not in line
    assert "no REFER right: EXDEV, even inside tmp_path" in Tier(1).describe("x")


def test_unavailable_landlock_says_why() -> None:
    assert "lsm=" in landlock.unavailable_reason(errno.EOPNOTSUPP)
    assert "5.13" in landlock.unavailable_reason(errno.ENOSYS)
    assert not Tier(None, "no").ok


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        (
            "creating a user namespace was refused (EPERM): a seccomp filter on this process "
            "blocks clone; fix: run elsewhere",
            "user namespaces refused by seccomp",
        ),
        (
            "user namespaces are disabled (user.max_user_namespaces = 0); fix: sysctl",
            "user namespaces disabled: user.max_user_namespaces = 0",
        ),
        ("something else; fix: x", "something else"),
    ],
)
def test_the_short_cause(reason: str, cause: str) -> None:
    assert short_cause(reason) == cause
