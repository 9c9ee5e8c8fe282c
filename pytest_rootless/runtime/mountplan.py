"""The mount plan: a container's root filesystem as frozen data, an ordered tuple of
operations computed once on the host (:mod:`.rootfs`) and applied in each container's init
(:mod:`.child.mounts`), as bubblewrap's setup operations are."""

from __future__ import annotations

from dataclasses import dataclass

# --- the operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Tmpfs:
    target: str
    mode: int = 0o755
    #: bytes; a full tmpfs gives the test ENOSPC instead of eating the host's memory
    size: int | None = None

    def describe(self) -> str:
        return f"tmpfs {self.target}"


@dataclass(frozen=True)
class Overlay:
    """A copy-on-write view of what the container sees at ``target`` when it is mounted
    (a bind of the host's directory, the root's own files, or an empty directory): writes
    land in an upper layer kept in the container's store (see :func:`apply`), which is
    also the record of what changed (overlayfs.rst: whiteouts for deletions,
    ``user.overlay.opaque`` for replaced directories)."""

    target: str
    #: A host directory between the upper layer and what is at ``target``: copies, the
    #: user's own, of what a write could not copy up (see runtime.fixups).
    fixups: str | None = None

    def describe(self) -> str:
        return f"overlay (copy-on-write) {self.target}"


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    readonly: bool = True
    is_file: bool = False

    def describe(self) -> str:
        return f"bind {self.source} -> {self.target} ({'ro' if self.readonly else 'rw'})"


@dataclass(frozen=True)
class File:
    target: str
    content: bytes
    mode: int = 0o644

    def describe(self) -> str:
        return f"file {self.target}"


@dataclass(frozen=True)
class Symlink:
    target: str
    link: str

    def describe(self) -> str:
        return f"symlink {self.target} -> {self.link}"


@dataclass(frozen=True)
class Dir:
    target: str

    def describe(self) -> str:
        return f"dir {self.target}"


@dataclass(frozen=True)
class Proc:
    target: str = "/proc"

    def describe(self) -> str:
        return f"proc {self.target}"


@dataclass(frozen=True)
class ReadOnlyCover:
    """Bind a path over itself and make it read-only (for /proc/sys and friends)."""

    target: str

    def describe(self) -> str:
        return f"read-only cover {self.target}"


@dataclass(frozen=True)
class Devpts:
    target: str = "/dev/pts"

    def describe(self) -> str:
        return f"devpts {self.target}"


@dataclass(frozen=True)
class ReadOnly:
    """Make one mount (not its submounts) read-only once it is populated."""

    target: str

    def describe(self) -> str:
        return f"read-only {self.target}"


@dataclass(frozen=True)
class HiddenProc:
    """A proc mount with nothing over it, then hidden under an empty read-only tmpfs.

    The kernel lets a user namespace mount a fresh proc only if a "fully visible" one is
    already in its mount namespace: no locked mount over a non-empty directory of it
    (fs/namespace.c, mnt_already_visible). The container's own /proc has read-only covers,
    so without this a container could not be made inside a container. The tmpfs hides it
    through its *parent* directory, so the proc mount itself keeps no child; locked in the
    inner namespace, nobody inside can unmount the tmpfs to reach it. Only for host
    users other than root: a host-root uid could write host sysctls through an uncovered
    proc it mounted itself.
    """

    target: str = "/dev/.rootless-proc"

    def describe(self) -> str:
        return f"hidden proc {self.target}/proc"


Op = (
    Tmpfs
    | Overlay
    | Bind
    | File
    | Symlink
    | Dir
    | Proc
    | ReadOnlyCover
    | Devpts
    | ReadOnly
    | HiddenProc
)
#: Operations that mount something at their target.
MOUNTS = (Tmpfs, Overlay, Bind, Proc, Devpts, HiddenProc)
#: Those of them that hide what the root's own files hold below their target.
COVERS = (Tmpfs, Bind, Proc, Devpts, HiddenProc)


@dataclass(frozen=True)
class Plan:
    """An ordered, immutable list of operations that builds one kind of root."""

    ops: tuple[Op, ...]
    home: str
    #: A host directory holding the root's own files (set by :func:`.skeleton.make_skeleton`).
    skeleton: str | None = None
    #: Size of each fresh tmpfs and of the store of the overlays' upper layers, in bytes.
    tmpfs_size: int | None = None
    #: A directory holding a whole root (an image's): the root is a copy-on-write view
    #: of it, mounts on top, then read-only; there is no skeleton then.
    image: str | None = None


#: Where the new root is assembled before pivot_root (covered only in our mount namespace).
BUILD_BASE = "/tmp"
