"""Writable paths over files whose owner or group the container cannot map.

A container maps one uid and one gid: the user's own (user_namespaces(7); an unprivileged
process may map nothing else). Under a ``writable`` path, overlayfs copies a file up on
its first write, keeping its owner and group; for an id with no mapping that copy-up fails
with EOVERFLOW (overlayfs.rst, "Permission model"). Yet plainly the user may write such a
file: one it owns with a foreign group (a checkout in a setgid folder, a CI workspace), a
world-writable file of root's, a world-writable directory of root's.

So, once per session and writable path, the host makes a *fixups* layer: a copy, owned by
the user, of each such entry the user may change plainly (a file it may write, a
directory it may create in), with its mode, content and times. It lies between the
overlay's upper layer and the real directory; a write copies the file up from it (the
user's own: no EOVERFLOW), and what the test did not touch is never copied. Directories
on the way to an entry come too, with their write bits kept only where the user may
write them plainly, so the copy grants nothing the plain run would not.

What the test then sees of such an entry is the user as its owner and group, instead of
the overflow ids (``nobody``): in its own view it may change their modes (as for the top
directory of every writable path, which is the upper layer's, the user's); whatever it
does there stays in the container. A file of the user's whose group is foreign is copied
only if the user may write it; an entry the user may not change plainly stays as it is,
and stays unwritable, as it would be. A writable file the user cannot read cannot be
copied: that is an error before the test runs, naming the file, its owner and group.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shutil
import stat


class FixupError(OSError):
    """A file under a writable path cannot be made writable inside a container."""


def needs_fixup(st: os.stat_result) -> bool:
    """Whether an entry's owner or group has no mapping in a container of this user."""
    return st.st_uid != os.geteuid() or st.st_gid != os.getegid()


def make_fixups(source: str, directory: str) -> bool:
    """Copy into ``directory`` what a write under ``source`` could not copy up; False if
    nothing needed it (the directory is then left empty). Raises FixupError for a file
    that cannot be copied."""
    top = os.lstat(source)
    modes: dict[str, tuple[int, str]] = {}  # made directory: (final mode, its real twin)
    for root, dirs, files in os.walk(source):
        # overlayfs shows the lower directory's own file system only (no submounts)
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == top.st_dev]
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if needs_fixup(st) and _changeable(path, st):
                _copy(source, directory, path, st, modes)
    if not modes:
        # Closed here, not by the collector: any() stops at the first entry, and an open
        # iterator collected later is a ResourceWarning in whatever test runs then.
        with os.scandir(directory) as entries:
            if not any(entries):
                return False
    # Modes and times last, deepest first: a directory's own may forbid what made it.
    for target, (mode, real) in sorted(modes.items(), key=lambda kv: -kv[0].count("/")):
        st = os.lstat(real)
        os.chmod(target, mode)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    return True


def _changeable(path: str, st: os.stat_result) -> bool:
    """What the user may change plainly: a file it may write, a directory it may create
    entries in."""
    if stat.S_ISREG(st.st_mode):
        return os.access(path, os.W_OK, effective_ids=True, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        return os.access(path, os.W_OK | os.X_OK, effective_ids=True, follow_symlinks=False)
    return False  # symlinks, devices, fifos and sockets are not copied up by a write


def _copy(
    source: str, directory: str, path: str, st: os.stat_result, modes: dict[str, tuple[int, str]]
) -> None:
    rel = os.path.relpath(path, source)
    _parents(source, directory, os.path.dirname(rel), modes)
    target = os.path.join(directory, rel)
    if stat.S_ISDIR(st.st_mode):
        if target not in modes:
            os.mkdir(target, 0o700)
        modes[target] = (stat.S_IMODE(st.st_mode), path)
        return
    try:
        # Content, mode and times; never xattrs (a user.overlay.* one would speak to the
        # overlay the copy becomes a layer of).
        shutil.copyfile(path, target, follow_symlinks=False)
        os.chmod(target, stat.S_IMODE(st.st_mode))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    except PermissionError:
        raise FixupError(
            errno.EACCES,
            f"writable path: {path} (owner {_user(st.st_uid)}, group {_group(st.st_gid)}) "
            "may be written but not read by you, so it cannot be made writable inside a "
            "container, which cannot map its owner or group: make it readable "
            "(chmod u+r or o+r), or leave it out of writable",
        ) from None


def _parents(source: str, directory: str, rel: str, modes: dict[str, tuple[int, str]]) -> None:
    """The directories from ``source`` down to ``rel``, in ``directory``: the real ones'
    modes, without the write bits where the user may not write them plainly."""
    if rel in ("", "."):
        return
    _parents(source, directory, os.path.dirname(rel), modes)
    target = os.path.join(directory, rel)
    if target in modes:
        return
    real = os.path.join(source, rel)
    st = os.lstat(real)
    mode = stat.S_IMODE(st.st_mode)
    if needs_fixup(st) and not _changeable(real, st):
        mode &= ~0o222
    os.mkdir(target, 0o700)
    modes[target] = (mode, real)


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} ({uid})"
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} ({gid})"
    except KeyError:
        return str(gid)
