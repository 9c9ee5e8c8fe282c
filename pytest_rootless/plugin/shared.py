"""What both sides of an isolated test share: the phases, report keys and section titles,
the test's ``tmp_path`` made on the host, and finding pytest's junitxml plugin."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from typing import Any, Literal

import pluggy
import pytest

Phase = Literal["setup", "call", "teardown"]


#: The report section that names the limit a test was stopped by.
LIMIT_SECTION = "rootless: limit reached"


PHASES: tuple[Phase, ...] = ("setup", "call", "teardown")


_HOOKSPEC = pluggy.HookspecMarker("pytest")


_HOOKIMPL = pluggy.HookimplMarker("pytest")


#: The extra key of a report frame holding a longrepr rendered with markup.
MARKUP_KEY = "rootless_longrepr_markup"


#: The extra key of a report frame holding the terminal's current line in the container.
LINE_KEY = "rootless_terminal_line"


def junitxml_plugin(config: pytest.Config) -> Any:
    """pytest's junitxml plugin object when ``--junitxml`` is on, else None. pytest keeps
    it under a private stash key; it is found here by what it does."""
    for plugin in config.pluginmanager.get_plugins():
        if callable(getattr(plugin, "add_global_property", None)) and callable(
            getattr(plugin, "node_reporter", None)
        ):
            return plugin
    return None


@dataclass(frozen=True)
class TmpPath:
    """The test's writable directory in basetemp, made on the host before the container."""

    basename: str
    path: str
    statically_used: bool  # tmp_path/tmpdir among the item's fixtures

    def tidy(self, config: pytest.Config, passed: bool) -> None:
        """Remove it if the test left it empty and pytest would not have kept it: never
        asked for, or the retention policy drops the directories of passed tests. What
        is kept holds no symlink (see replace_symlinks)."""
        policy = config.getini("tmp_path_retention_policy")
        if not self.statically_used or (policy == "failed" and passed):
            self.tidy_unused()
        if os.path.lexists(self.path):
            replace_symlinks(self.path)

    def tidy_unused(self) -> None:
        try:
            os.rmdir(self.path)  # only if empty
        except OSError:
            pass


def replace_symlinks(top: str) -> None:
    """Replace every symlink below ``top`` by an empty file of the same name (mode 0600).
    A container's symlink names a path of the container's view, and pytest's later
    cleanup of basetemp follows it: where it cannot unlink an entry it chmods the entry
    (``_pytest.pathlib.on_rm_rf_error``), that is, a symlink's target on the host.
    Walked through directory fds, never following a link; a directory the test made
    unreadable or read-only is given back u+rwx where that is needed to get in or to
    replace a link. Directories deeper than MAX_SYMLINK_DEPTH are removed whole (where
    shutil.rmtree can: not a tree nearly 1000 levels deep, which pytest's own cleanup
    cannot remove either)."""
    try:
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        _replace_symlinks_in(fd, 0)
    finally:
        os.close(fd)


#: Levels walked (one open fd each); deeper directories are removed whole (through fds,
#: never following a link), so that no tree a test made can exhaust the fds or the stack.
MAX_SYMLINK_DEPTH = 128


def _replace_symlinks_in(dirfd: int, depth: int) -> None:
    try:
        entries = [(e.name, e.stat(follow_symlinks=False).st_mode) for e in os.scandir(dirfd)]
    except OSError:
        return
    for name, mode in entries:
        try:
            if stat.S_ISLNK(mode):
                _replace_symlink(name, dirfd)
            elif stat.S_ISDIR(mode) and depth >= MAX_SYMLINK_DEPTH:
                try:
                    shutil.rmtree(name, dir_fd=dirfd)
                except RecursionError:  # deeper than rmtree goes (as pytest's own cleanup)
                    continue
            elif stat.S_ISDIR(mode):
                fd = _open_directory(name, dirfd)
                try:
                    _replace_symlinks_in(fd, depth + 1)
                finally:
                    os.close(fd)
        except OSError:
            continue  # gone meanwhile, or out of reach: nothing to follow there


def _replace_symlink(name: str, dirfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dirfd)
    except PermissionError:
        os.fchmod(dirfd, stat.S_IMODE(os.fstat(dirfd).st_mode) | stat.S_IRWXU)
        os.unlink(name, dir_fd=dirfd)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    os.close(os.open(name, flags, 0o600, dir_fd=dirfd))


def _open_directory(name: str, dirfd: int) -> int:
    """The directory ``name`` (never a link), opened; made u+rwx first if need be."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=dirfd)
    except PermissionError:
        # chmod through an O_PATH fd of the directory itself: no link can redirect it
        path_fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
        try:
            mode = stat.S_IMODE(os.fstat(path_fd).st_mode) | stat.S_IRWXU
            os.chmod(f"/proc/self/fd/{path_fd}", mode)
        finally:
            os.close(path_fd)
        return os.open(name, flags, dir_fd=dirfd)


#: Fixtures that make temporary directories (pytester's use tmp_path_factory).
TMP_FIXTURES = frozenset({"tmp_path", "tmpdir", "tmp_path_factory", "tmpdir_factory"})
