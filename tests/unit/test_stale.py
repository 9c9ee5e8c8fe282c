"""Removing what killed sessions left: directories named after a pid that is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pytest_rootless.runtime import stale


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_only_directories_of_gone_sessions_are_removed(tmp_path: Path) -> None:
    gone = dead_pid()
    names = {
        "dead": f"{stale.PREFIX}{gone}-abc",
        "alive": f"{stale.PREFIX}{os.getpid()}-abc",
        "unnamed": f"{stale.PREFIX}x{gone}-abc",
        "other": f"other-{gone}-abc",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
    (tmp_path / f"{stale.PREFIX}{gone}-file").write_text("")  # not a directory
    removed: list[str] = []
    stale.remove_stale(str(tmp_path), removed.append)
    assert removed == [str(tmp_path / names["dead"])]


def test_liveness() -> None:
    assert stale.session_alive(os.getpid())
    assert not stale.session_alive(dead_pid())


def test_an_unreadable_parent_is_nothing_to_remove(tmp_path: Path) -> None:
    removed: list[str] = []
    stale.remove_stale(str(tmp_path / "missing"), removed.append)
    assert removed == []
