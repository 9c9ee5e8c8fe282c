"""The session's private state directory: prepared roots, network hosts files. Named after
pytest's pid, so that what a killed session left (no unconfigure ran) is found and removed
by the next one."""

from __future__ import annotations

import os
import shutil
import tempfile

from .stale import PREFIX, remove_stale


def state_parent() -> str:
    """Where prepared roots live: a tmpfs if there is one (a prepared root is ~60
    directories, files and symlinks, and metadata operations on a disk file system can
    cost 15 times as much), else the temporary directory."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return tempfile.gettempdir()


def new_state_dir(kind: str = "") -> str:
    """A private directory for this session's prepared roots, named after this pid. Those
    left by sessions that were killed (no unconfigure ran) are removed first."""
    parent = state_parent()
    remove_stale(parent, lambda path: shutil.rmtree(path, ignore_errors=True))
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{kind}", dir=parent)
