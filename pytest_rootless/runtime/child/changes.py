"""What a test changed: the upper layers of the container's overlays and its fresh
tmpfs mounts, read in the container (init's writes report, a call process's
``container.changes()``)."""

from __future__ import annotations

import os
import stat

from ...kernel import mount as mnt
from .mounts import Store

WHITEOUT = (0, 0)  # a character device 0/0 marks a deleted entry (overlayfs.rst)


def changes(store: Store) -> dict[str, str]:
    """What the container changed under its overlays, read from their upper layers:
    ``{path: "added" | "modified" | "deleted"}``. A file copied up but left as it was
    (same size, mtime and mode as below) is no change; a directory replaced whole (opaque)
    is "modified", its entries "added"."""
    found: dict[str, str] = {}
    for index, (inside, lower) in enumerate(store.layers):
        upper = store.path(index, "upper")
        for root, dirs, files in os.walk(upper):
            rel_root = os.path.relpath(root, upper)
            for name in [*dirs, *files]:
                rel = os.path.normpath(os.path.join(rel_root, name))
                path = os.path.join(inside, rel)
                st = os.lstat(os.path.join(root, name))
                below = _lstat(mnt.fd_path(lower) + "/" + rel)
                if (
                    stat.S_ISCHR(st.st_mode)
                    and (os.major(st.st_rdev), os.minor(st.st_rdev)) == WHITEOUT
                ):
                    found[path] = "deleted"
                elif below is None:
                    found[path] = "added"
                elif stat.S_ISDIR(st.st_mode):
                    if _opaque(os.path.join(root, name)):
                        found[path] = "modified"
                elif (st.st_size, st.st_mtime_ns, st.st_mode) != (
                    below.st_size,
                    below.st_mtime_ns,
                    below.st_mode,
                ):
                    found[path] = "modified"
    return dict(sorted(found.items()))


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "user.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False
