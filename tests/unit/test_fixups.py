"""The fixups layer of a writable path (runtime.fixups): copies, the user's own, of what a
write could not copy up, and nothing the user could not change plainly."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from pytest_rootless.runtime.fixups import FixupError, make_fixups

AS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not AS_ROOT, reason="giving files to other ids needs root")
OTHER = 4242


def test_a_tree_of_ones_own_needs_nothing(tmp_path: Path) -> None:
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "f").write_text("x")
    (tmp_path / "fix").mkdir()
    assert make_fixups(str(tmp_path / "src"), str(tmp_path / "fix")) is False
    assert list((tmp_path / "fix").iterdir()) == []


@needs_root
def test_what_root_may_change_is_copied_and_the_rest_keeps_its_modes(tmp_path: Path) -> None:
    src, fix = tmp_path / "src", tmp_path / "fix"
    (src / "locked").mkdir(parents=True)
    (src / "locked" / "f").write_text("content")
    os.utime(src / "locked" / "f", (1_000_000, 1_000_000))
    os.chown(src / "locked" / "f", OTHER, OTHER)
    (src / "locked" / "f").chmod(0o640)
    (src / "mine").write_text("mine")  # root's own: mapped, never copied
    fix.mkdir()
    assert make_fixups(str(src), str(fix)) is True
    copy = fix / "locked" / "f"
    assert copy.read_text() == "content"
    st = copy.stat()
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime == 1_000_000  # so that changes() sees no change in it
    assert not (fix / "mine").exists()


@needs_root
def test_a_writable_file_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    # pytest's basetemp is root's alone: the other user works in a directory of /tmp
    top = Path(tempfile.mkdtemp(prefix="rootless-fixups-"))
    top.chmod(0o755)
    try:
        _check_unreadable(top)
    finally:
        shutil.rmtree(top)


def _check_unreadable(top: Path) -> None:
    src, fix = top / "src", top / "fix"
    src.mkdir()
    (src / "wo").write_text("x")
    os.chown(src / "wo", OTHER, OTHER)
    (src / "wo").chmod(0o222)
    fix.mkdir()
    os.chown(fix, OTHER + 1, OTHER + 1)
    pid = os.fork()
    if pid == 0:  # another user, who may write the file but not read it
        code = 1
        try:
            os.setgid(OTHER + 1)
            os.setuid(OTHER + 1)
            try:
                make_fixups(str(src), str(fix))
            except FixupError as exc:
                if "wo (owner 4242, group 4242) may be written but not read" in str(exc):
                    code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@needs_root
def test_a_directory_the_user_may_not_write_stays_unwritable(tmp_path: Path) -> None:
    """Another's read-only directory holding a file the user may write: the file is
    copied, the directory on the way keeps its mode without write bits."""
    top = Path(tempfile.mkdtemp(prefix="rootless-fixups-"))
    top.chmod(0o755)
    try:
        src, fix = top / "src", top / "fix"
        (src / "locked").mkdir(parents=True)
        (src / "locked" / "w.txt").write_text("w")
        (src / "locked" / "w.txt").chmod(0o666)
        os.chown(src / "locked" / "w.txt", OTHER, OTHER)
        os.chown(src / "locked", OTHER, OTHER)
        (src / "locked").chmod(0o755)
        fix.mkdir()
        os.chown(fix, OTHER + 1, OTHER + 1)
        pid = os.fork()
        if pid == 0:  # a user who may write w.txt, not create entries in locked/
            code = 1
            try:
                os.setgid(OTHER + 1)
                os.setuid(OTHER + 1)
                make_fixups(str(src), str(fix))
                code = 0
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert (fix / "locked" / "w.txt").read_text() == "w"
        assert stat.S_IMODE((fix / "locked").stat().st_mode) == 0o555
        assert stat.S_IMODE((fix / "locked" / "w.txt").stat().st_mode) == 0o666
    finally:
        shutil.rmtree(top)
