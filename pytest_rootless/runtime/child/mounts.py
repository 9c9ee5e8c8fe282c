"""Applying a mount plan, in the container's init after clone: the sequence below.

1. make every mount private (``MS_REC|MS_PRIVATE`` on ``/``), so nothing we mount leaks
   to the host and host mounts made later do not leak in (mount_namespaces(7));
2. pin every bind source with an ``O_PATH`` fd, then bind the plan's skeleton (see
   :func:`pytest_rootless.runtime.skeleton.make_skeleton`) on ``/tmp`` as the new root (the
   fds keep reachable the sources it covers);
3. apply the operations, parents before children; each read-only bind is made read-only
   with ``mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`` because ``MS_RDONLY`` in the bind
   call itself is silently ignored and a plain remount would leave submounts writable;
4. make the new root itself read-only, then ``pivot_root(".", ".")`` into it and
   detach the old root (pivot_root(2), the sequence from its NOTES section).

Targets are created component by component and never through a symlink, so a symlink in
the tree (ours or the host's) cannot redirect a mount onto the host.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...kernel import libc, procfs
from ...kernel import mount as mnt
from ...kernel.mount import MountFlag as MS
from ...kernel.paths import is_under
from ..mountplan import (
    BUILD_BASE,
    Bind,
    Devpts,
    Dir,
    File,
    HiddenProc,
    Op,
    Overlay,
    Plan,
    Proc,
    ReadOnly,
    ReadOnlyCover,
    Symlink,
    Tmpfs,
)


class RootfsError(OSError):
    """Building the root filesystem failed; the message names the operation and ``call``
    the system call that failed, when one did."""

    call: str | None = None


def _makedirs(path: str, mode: int = 0o755) -> None:
    """mkdir -p that refuses to pass through a symlink (O_NOFOLLOW semantics)."""
    try:  # the common case: the mount point exists, reached through no symlink at all
        os.close(mnt.open_dir_nofollow(path))
        return
    except libc.SyscallError as exc:
        if exc.errno == errno.ELOOP:
            raise RootfsError(errno.ELOOP, f"refusing to follow a symlink in {path}") from None
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise
    current = ""
    for part in path.strip("/").split("/"):
        if not part:
            continue
        current += "/" + part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, mode)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise RootfsError(errno.ELOOP, f"refusing to follow the symlink {current}")


def _create_file(path: str) -> None:
    _makedirs(os.path.dirname(path))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        return
    if stat.S_ISLNK(st.st_mode):
        raise RootfsError(errno.ELOOP, f"refusing to follow the symlink {path}")


@dataclass
class Store:
    """The upper layers of a container's overlays, on a tmpfs mounted nowhere (fsmount(2)):
    the test cannot see or touch them; init, which holds the fd, reads them for
    :func:`changes`. Layer ``i`` is ``i/upper`` (and ``i/work``, overlayfs's scratch)."""

    fd: int
    #: per overlay: its path inside, and an fd of its lower layer (for "modified or added")
    layers: list[tuple[str, int]] = field(default_factory=list)

    def path(self, *parts: str | int) -> str:
        return "/".join([mnt.fd_path(self.fd), *map(str, parts)])


def apply(
    plan: Plan,
    base: str = BUILD_BASE,
    rw_binds: Sequence[str] = (),
    files: Sequence[tuple[str, str]] = (),
) -> Store | None:
    """Build ``plan``, bind the ``rw_binds`` host paths read-write and the ``files``
    (host file, inside path) read-only on top, and pivot into it. Runs in the
    container's init (mount namespace already unshared, capabilities held
    in the owning user namespace). Returns the store of the overlays' upper layers, if
    the plan has overlays."""
    root = plan.skeleton
    if root is None:
        raise RootfsError(errno.EINVAL, "the plan was not prepared (no skeleton)")
    ops = (
        *plan.ops,
        *(Bind(path, path, readonly=False) for path in rw_binds),
        *(Bind(source, target, is_file=True) for source, target in files),
    )
    # === MOUNT PROPAGATION ===
    mnt.mount(None, "/", None, MS.REC | MS.PRIVATE)
    sources = _pin_sources(root, plan.image, ops)
    # === THE STORE OF UPPER LAYERS === a tmpfs that is mounted nowhere
    store = None
    if plan.image is not None or any(isinstance(op, Overlay) for op in ops):
        options = {"mode": "0700"}
        if plan.tmpfs_size:
            options["size"] = str(plan.tmpfs_size)
        store = Store(mnt.fsmount_detached("tmpfs", options))
    # === NEW ROOT: the prepared skeleton (or a view of the image), then mounts on top ===
    if plan.image is not None:
        assert store is not None
        _image_root(plan.image, [sources[root], sources[plan.image]], base, store)
    else:
        mnt.mount(mnt.fd_path(sources[root]), base, None, MS.BIND, label=root)
    for op in ops:
        target = base + op.target if op.target != "/" else base
        try:
            if isinstance(op, Overlay):
                assert store is not None
                _overlay(op, target, store, sources.get(op.fixups) if op.fixups else None)
            else:
                _apply_one(op, target, sources)
        except RootfsError as exc:
            if exc.errno != errno.ELOOP:
                raise
            # paths as the container will see them (the root is assembled at ``base``)
            where = str(exc.strerror).replace(f" {base}/", " /")
            raise RootfsError(errno.ELOOP, f"{op.describe()}: {where}") from None
        except OSError as exc:
            error = RootfsError(exc.errno or errno.EIO, f"{op.describe()}: {exc.strerror or exc}")
            error.call = getattr(exc, "call", None)
            raise error from None
    for fd in sources.values():
        os.close(fd)
    mnt.mount_setattr(base, mnt.MOUNT_ATTR_RDONLY, recursive=False)
    _pivot_into(base)
    return store


def _pivot_into(base: str) -> None:
    """=== PIVOT_ROOT === into ``base``, the old root detached from under it (never
    chroot: a process with CAP_SYS_CHROOT escapes a chroot)."""
    os.chdir(base)
    mnt.pivot_root(".", ".")
    mnt.umount2(".", mnt.MNT_DETACH)
    os.chdir("/")


def _pin_sources(root: str, image: str | None, ops: Sequence[Op]) -> dict[str, int]:
    """=== PIN BIND SOURCES === an O_PATH fd of every host path the root is built from
    (the skeleton, the image, overlays' fixups, binds), opened before the new root covers
    any of them."""
    sources: dict[str, int] = {}
    whole = (Bind(image, "/"),) if image is not None else ()
    fixups = (Bind(op.fixups, op.target) for op in ops if isinstance(op, Overlay) and op.fixups)
    binds = (op for op in ops if isinstance(op, Bind))
    for bind in (Bind(root, "/"), *whole, *fixups, *binds):
        if bind.source not in sources:
            try:
                sources[bind.source] = mnt.open_path(bind.source)
            except OSError as exc:
                raise RootfsError(
                    exc.errno or errno.EIO, f"cannot open bind source {bind.source}: {exc.strerror}"
                ) from None
    return sources


def _image_root(image: str, lowers: list[int], base: str, store: Store) -> None:
    """The root of an image directory: an overlay of the skeleton (the mount points and
    /etc files the container adds, see skeleton.make_skeleton) over the image; its upper
    layer (in the store, not a layer of :func:`changes`) takes what is left to create;
    it is made read-only with the rest of the root."""
    mode = stat.S_IMODE(os.fstat(lowers[-1]).st_mode) | 0o700
    _mount_overlay(lowers, base, store, "root", mode, f"rootfs {image}", image)


def _overlay(op: Overlay, target: str, store: Store, fixups: int | None) -> None:
    """A copy-on-write view of what is at ``target`` now, mounted over it (with the
    ``fixups`` directory between, see runtime.fixups)."""
    try:
        _makedirs(target)
    except OSError as exc:
        raise RootfsError(
            exc.errno or errno.EIO,
            f"writable path {op.target} does not exist and cannot be created there "
            f"({exc.strerror or exc}): its parent is read-only; create it on the host first",
        ) from None
    lower = mnt.open_dir_nofollow(target)
    layer = len(store.layers)
    store.layers.append((op.target, lower))
    mode = stat.S_IMODE(os.stat(target).st_mode)
    lowers = [lower] if fixups is None else [fixups, lower]
    _mount_overlay(lowers, target, store, str(layer), mode, f"writable path {op.target}", target)


def _mount_overlay(
    lowers: list[int], target: str, store: Store, layer: str, mode: int, what: str, where: str
) -> None:
    """overlayfs(5) over ``target``: the directories of fds ``lowers`` below (the first
    one uppermost), the store's
    ``layer`` above (``userxattr``: its bookkeeping in ``user.overlay.*`` xattrs, as a user
    namespace must, Linux 5.11). Paths as fds: a comma or colon in a path would split
    overlay's option string."""
    os.mkdir(store.path(layer))
    os.mkdir(store.path(layer, "upper"), mode)
    os.mkdir(store.path(layer, "work"), 0o700)
    options = (
        f"lowerdir={':'.join(mnt.fd_path(fd) for fd in lowers)},"
        f"upperdir={store.path(layer, 'upper')},"
        f"workdir={store.path(layer, 'work')},userxattr"
    )
    try:
        mnt.mount("overlay", target, "overlay", MS.NOSUID | MS.NODEV, options, label="overlay")
    except OSError as exc:
        raise RootfsError(
            exc.errno or errno.EIO,
            f"{what}: the kernel refused an overlay over it ({exc.strerror}); its file "
            f"system ({_fstype(where)}) cannot be an overlay's lower layer in a user "
            "namespace: use a directory on a local file system (ext4, xfs, btrfs, tmpfs)",
        ) from None


def _fstype(path: str) -> str:
    """The type of the file system ``path`` is on, from mountinfo (proc_pid_mountinfo(5))."""
    best, kind = "", "unknown"
    for mount in procfs.mountinfo():  # a later mount on the same point is on top
        if is_under(path, mount.point) and len(mount.point) >= len(best):
            best, kind = mount.point, mount.fstype
    return kind


def _apply_one(op: Op, target: str, sources: dict[str, int]) -> None:
    if isinstance(op, Tmpfs):
        _makedirs(target)
        data = f"mode={op.mode:04o}" + (f",size={op.size}" if op.size else "")
        mnt.mount("tmpfs", target, "tmpfs", MS.NOSUID | MS.NODEV, data, label="tmpfs")
    elif isinstance(op, Bind):
        if op.is_file:
            _create_file(target)
        else:
            _makedirs(target)
        mnt.mount(mnt.fd_path(sources[op.source]), target, None, MS.BIND | MS.REC, label=op.source)
        if op.readonly:
            mnt.mount_setattr(target, mnt.MOUNT_ATTR_RDONLY, recursive=True)
    elif isinstance(op, File):
        _makedirs(os.path.dirname(target))
        if os.path.islink(target):  # an image's link (resolv.conf into /run): never follow it
            os.unlink(target)
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, op.mode
        )
        try:
            os.write(fd, op.content)
        finally:
            os.close(fd)
        libc.trace_note(f"write({op.target!r}, {len(op.content)} bytes)")
    elif isinstance(op, Symlink):
        _makedirs(os.path.dirname(target))
        os.symlink(op.link, target)
        libc.trace_note(f"symlink({op.link!r}, {op.target!r})")
    elif isinstance(op, Dir):
        _makedirs(target)
        libc.trace_note(f"mkdir({op.target!r})")
    elif isinstance(op, Proc):
        # A fresh proc for the new PID namespace, mounted by a process inside it. Never
        # MS_BIND here: that silently binds the host's /proc, showing host pids.
        _makedirs(target)
        mnt.mount("proc", target, "proc", MS.NOSUID | MS.NODEV | MS.NOEXEC)
    elif isinstance(op, HiddenProc):
        _makedirs(target + "/proc")
        mnt.mount("proc", target + "/proc", "proc", MS.NOSUID | MS.NODEV | MS.NOEXEC)
        mnt.mount("tmpfs", target, "tmpfs", MS.NOSUID | MS.NODEV | MS.NOEXEC, "mode=0000")
        mnt.mount_setattr(target, mnt.MOUNT_ATTR_RDONLY, recursive=False)
    elif isinstance(op, ReadOnlyCover):
        if os.path.lexists(target):
            mnt.mount(target, target, None, MS.BIND | MS.REC, label=op.target)
            mnt.mount_setattr(target, mnt.MOUNT_ATTR_RDONLY, recursive=True)
    elif isinstance(op, Devpts):
        _makedirs(target)
        mnt.mount(
            "devpts", target, "devpts", MS.NOSUID | MS.NOEXEC, "newinstance,ptmxmode=0666,mode=0620"
        )
    elif isinstance(op, ReadOnly):
        mnt.mount_setattr(target, mnt.MOUNT_ATTR_RDONLY, recursive=False)
