"""The skeleton of a container's root: every part of it that is not a mount, written once
on the host per plan (the plan itself is built by :mod:`.rootfs`)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from collections.abc import Sequence

from ..kernel.paths import is_under
from .child.mounts import _create_file, _makedirs
from .fixups import make_fixups
from .mountplan import (
    COVERS,
    Bind,
    Dir,
    File,
    HiddenProc,
    Op,
    Overlay,
    Plan,
    ReadOnly,
    Symlink,
    Tmpfs,
)
from .rootfs import _deepest_mount


def make_skeleton(plan: Plan, directory: str) -> Plan:
    """Write, once and on the host, every part of the root that is not a mount.

    Directories, mount points, the /etc files, symlinks and the read-only /dev are created
    under ``directory`` (the *skeleton*); containers bind it read-only as their root and
    only mount on top of it, instead of recreating it in a tmpfs each time. What lies
    under a fresh tmpfs or under a bind of the host's tree stays in the plan: it can only
    be created once those are mounted.

    An image's root is an overlay with the skeleton as its top lower layer: the mount
    points and /etc files the container adds are the skeleton's (the user's own), so
    nothing is ever written into, or copied up from, the image, which is usually
    root's (a tree an unprivileged user may read but cannot write, nor map its owner).
    """

    image = plan.image

    def materialisable(target: str, covers: list[str], op: Op) -> bool:
        under = any(is_under(target, c) and target != c for c in covers)
        return not under and (image is None or _fits_image(image, op))

    # A tmpfs made read-only once populated is the same as a read-only skeleton directory,
    # where the skeleton itself shows at that place (not under a bind of the host's tree).
    # An overlay hides nothing: what lies below it is its lower layer.
    mounts = [op.target for op in plan.ops if isinstance(op, COVERS)]
    sealed = {
        op.target
        for op in plan.ops
        if isinstance(op, ReadOnly) and image is None and materialisable(op.target, mounts, op)
    }
    ops = [op for op in plan.ops if not (op.target in sealed and isinstance(op, Tmpfs | ReadOnly))]
    covers = [op.target for op in ops if isinstance(op, COVERS)]

    os.makedirs(directory, 0o755, exist_ok=True)
    os.chmod(directory, 0o755)
    kept: list[Op] = []
    for op in ops:
        if not materialisable(op.target, covers, op):
            kept.append(op)
            continue
        path = directory + op.target if op.target != "/" else directory
        if isinstance(op, File):
            _makedirs(os.path.dirname(path))
            with open(path, "wb") as f:
                f.write(op.content)
            os.chmod(path, op.mode)
        elif isinstance(op, Symlink):
            _makedirs(os.path.dirname(path))
            os.symlink(op.link, path)
        elif isinstance(op, Dir):
            _makedirs(path)
        else:  # a mount: create its mount point now, mount it in each container
            if isinstance(op, Bind) and op.is_file:
                _create_file(path)
            else:
                _makedirs(path + "/proc" if isinstance(op, HiddenProc) else path)
            kept.append(op)
    kept = [_with_fixups(op, kept, plan.image, directory) for op in kept]
    return dataclasses.replace(plan, ops=tuple(kept), skeleton=directory)


def _with_fixups(op: Op, ops: Sequence[Op], image: str | None, skeleton: str) -> Op:
    """A writable path's overlay, with the fixups its files need (see runtime.fixups)."""
    if not isinstance(op, Overlay):
        return op
    below = _deepest_mount(op.target, [other for other in ops if other is not op])
    if isinstance(below, Bind) and not below.is_file:
        source = below.source + op.target[len(below.target) :]
    elif below is None and image is not None:
        source = image + op.target
    else:
        return op  # a fresh tmpfs, or the skeleton: the user's own already
    if not os.path.isdir(source):
        return op
    # One layer per source a session: in the session's state directory, beside the
    # skeletons; ".none" remembers that a source needed none.
    fixups = os.path.join(os.path.dirname(skeleton), "fixups" + source.replace("/", "-"))
    if os.path.exists(fixups + ".none"):
        return op
    if not os.path.isdir(fixups):
        os.makedirs(fixups + ".new", 0o700)
        try:
            made = make_fixups(source, fixups + ".new")
        except BaseException:
            shutil.rmtree(fixups + ".new", ignore_errors=True)
            raise
        if not made:
            os.rmdir(fixups + ".new")
            open(fixups + ".none", "wb").close()
            return op
        os.rename(fixups + ".new", fixups)
    return dataclasses.replace(op, fixups=fixups)


def _fits_image(image: str, op: Op) -> bool:
    """Whether ``op``'s target can be the skeleton's in an overlay over ``image``: no
    component of its path is a symlink or a non-directory there (the skeleton would hide
    it: that is left to the container, which refuses it, see child.mounts._makedirs), and
    what is there already is of the same kind. A file over the image's symlink (its
    resolv.conf into /run) is fine: the skeleton's file is what the container sees."""
    parts = [p for p in op.target.split("/") if p]
    path = image
    for index, part in enumerate(parts):
        path += "/" + part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return True
        last = index == len(parts) - 1
        if last and isinstance(op, File | Symlink):
            return not stat.S_ISDIR(st.st_mode)
        if last and isinstance(op, Bind) and op.is_file:
            return stat.S_ISREG(st.st_mode)
        if not stat.S_ISDIR(st.st_mode):
            return False
    return True
