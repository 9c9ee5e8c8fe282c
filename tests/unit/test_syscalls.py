"""The kernel boundary names every failing call, with its arguments and errno."""

from __future__ import annotations

import errno
import os

import pytest

from pytest_rootless.kernel import libc, mount
from pytest_rootless.kernel import syscalls as sc


def test_a_failing_call_names_itself_its_arguments_and_the_errno() -> None:
    # Refused before any privilege check: the target does not exist.
    with pytest.raises(libc.SyscallError) as exc:
        mount.mount("/nonexistent-source", "/nonexistent-target", None, mount.MountFlag.BIND)
    assert exc.value.errno == errno.ENOENT
    assert exc.value.call == ("mount('/nonexistent-source', '/nonexistent-target', None, MS_BIND)")
    assert "(ENOENT)" in str(exc.value)
    assert isinstance(exc.value, OSError)


def test_openat2_refuses_any_symlink_on_the_way(tmp_path: os.PathLike[str]) -> None:
    real = os.path.join(tmp_path, "real")
    os.mkdir(real)
    os.symlink(real, os.path.join(tmp_path, "link"))
    os.close(mount.open_dir_nofollow(real))
    with pytest.raises(libc.SyscallError) as exc:
        mount.open_dir_nofollow(os.path.join(tmp_path, "link"))
    assert exc.value.errno == errno.ELOOP


def test_trace_records_calls_only_while_tracing() -> None:
    libc.set_tracing(True)
    try:
        with pytest.raises(libc.SyscallError):
            mount.umount2("/nonexistent-target", mount.MNT_DETACH)
        assert libc.TRACE == ["umount2('/nonexistent-target', MNT_DETACH) = -1 ENOENT"]
    finally:
        libc.set_tracing(False)
    assert libc.TRACE == []


def test_flag_names_read_like_the_man_page() -> None:
    flags = mount.MountFlag.BIND | mount.MountFlag.REC
    assert libc.flag_names(flags, mount.MountFlag, "MS_") == "MS_BIND|MS_REC"
    assert libc.flag_names(sc.CloneFlag.NEWUSER, sc.CloneFlag, "CLONE_") == "CLONE_NEWUSER"
