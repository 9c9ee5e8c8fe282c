"""The root filesystem of a container: a mount plan as frozen data, and applying it.

Following bubblewrap, the plan is computed once (on the host, per session and set of
options) as an ordered tuple of operations; a container only *applies* it. Applying:

1. make every mount private (``MS_REC|MS_PRIVATE`` on ``/``), so nothing we mount leaks
   to the host and host mounts made later do not leak in (mount_namespaces(7));
2. pin every bind source with an ``O_PATH`` fd, then bind the prepared skeleton (see
   :func:`prepare`) on ``/tmp`` as the new root (the fds keep reachable the sources it
   covers);
3. apply the operations, parents before children; each read-only bind is made read-only
   with ``mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`` because ``MS_RDONLY`` in the bind
   call itself is silently ignored and a plain remount would leave submounts writable;
4. make the new root itself read-only, then ``pivot_root(".", ".")`` into it and
   detach the old root (pivot_root(2), the sequence from its NOTES section).

Targets are created component by component and never through a symlink, so a symlink in
the tree (ours or the host's) cannot redirect a mount onto the host.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..kernel import libc
from ..kernel import mount as mnt
from ..kernel.mount import MountFlag as MS

#: Where the new root is assembled before pivot_root (covered only in our mount namespace).
BUILD_BASE = "/tmp"

# /etc is built from an allow-list: what programs need to run, never secrets
# (shadow, gshadow, sudoers, ssh host keys) nor host identity beyond the user.
ETC_COPY = (
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "localtime",
    "timezone",
    "protocols",
    "services",
    "mime.types",
    "os-release",
    "debian_version",
    "host.conf",
    "gai.conf",
    "resolv.conf",
    "environment",
    "inputrc",
    "ssl/openssl.cnf",
    "pki/tls/openssl.cnf",
)
# Certificates only: /etc/ssl/private and /etc/pki/tls/private hold keys that a test run
# by root could read (uid 0 owns them, capabilities or not).
ETC_BIND_DIRS = (
    "ld.so.conf.d",
    "ssl/certs",
    "ca-certificates",
    "pki/ca-trust",
    "pki/tls/certs",
    "crypto-policies",
    "alternatives",
    "terminfo",
)
# With rootfs="host", what is hidden anyway: secrets a root-run test could read, and the
# directories of host daemons' sockets (connect(2) works through a read-only mount).
HOST_MASKED_FILES = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/security/opasswd",
)
HOST_MASKED_DIRS = (
    "/etc/ssh",
    "/etc/sudoers.d",
    "/etc/ssl/private",
    "/etc/pki/tls/private",
    "/run",
    "/var/run",
)
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
# Read-only covers over the fresh /proc, as bubblewrap does: a uid that is root on the host
# could otherwise write host sysctls through them.
PROC_COVERS = ("sys", "sysrq-trigger", "irq", "bus", "fs")


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
    #: A host directory holding the root's own files (set by :func:`prepare`).
    skeleton: str | None = None
    #: Size of each fresh tmpfs and of the store of the overlays' upper layers, in bytes.
    tmpfs_size: int | None = None
    #: A directory holding a whole root (an image's): the root is a copy-on-write view
    #: of it, mounts on top, then read-only; there is no skeleton then.
    image: str | None = None


# --- building a plan (host side, once per session and options) ------------------------------


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    user: str
    group: str
    home: str  # $HOME
    account_home: str = ""  # the home directory of the passwd entry


def host_identity() -> Identity:
    import grp
    import pwd

    uid, gid = os.getuid(), os.getgid()
    try:
        pw = pwd.getpwuid(uid)
        user, home = pw.pw_name, pw.pw_dir
    except KeyError:
        user, home = f"user{uid}", "/nonexistent"
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = f"group{gid}"
    return Identity(uid, gid, user, group, os.environ.get("HOME") or home, home)


def is_under(path: str, parent: str) -> bool:
    return parent == "/" or path == parent or path.startswith(parent.rstrip("/") + "/")


def outermost(paths: Iterable[str]) -> list[str]:
    """Drop every path that lies under another one (a recursive bind already shows it)."""
    result: list[str] = []
    for path in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if not any(is_under(path, kept) for kept in result):
            result.append(path)
    return sorted(result)


def python_paths() -> list[str]:
    """The running Python: its prefixes, every ``sys.path`` entry, and the directory of
    every imported top-level package (editable installs map packages outside sys.path)."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    candidates.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    candidates.update(p for p in sys.path if p)
    for name, module in list(sys.modules.items()):
        if "." in name or module is None:
            continue
        location = getattr(module, "__file__", None)
        if not isinstance(location, str) or not os.path.isabs(location):
            continue
        paths = getattr(module, "__path__", None)
        if paths is not None:  # a package: its directory
            candidates.update(p for p in paths if isinstance(p, str) and os.path.isabs(p))
        else:
            candidates.add(os.path.dirname(location))
    found = []
    for path in candidates:
        real = os.path.realpath(path)
        if real != "/" and os.path.exists(real):
            found.append(real)
    return found


def _etc_ops() -> list[Op]:
    ops: list[Op] = []
    for name in ETC_COPY:
        path = f"/etc/{name}"
        if os.path.islink(path) and name != "resolv.conf":
            ops.append(Symlink(path, os.readlink(path)))
        elif os.path.isfile(path):  # resolv.conf often links into /run: copy its content
            try:
                with open(path, "rb") as f:
                    ops.append(File(path, f.read()))
            except OSError:
                continue
    for name in ETC_BIND_DIRS:
        path = f"/etc/{name}"
        if os.path.islink(path):
            ops.append(Symlink(path, os.readlink(path)))
        elif os.path.isdir(path):
            ops.append(Bind(path, path))
    # Debian links /usr/lib/python3.X/sitecustomize.py into /etc/python3.X.
    for name in sorted(os.listdir("/etc")) if os.path.isdir("/etc") else ():
        if name.startswith("python") and os.path.isdir(f"/etc/{name}"):
            ops.append(Bind(os.path.realpath(f"/etc/{name}"), f"/etc/{name}"))
    return ops


def _identity_ops(ident: Identity, home: str, hostname: str) -> list[Op]:
    users = {0: f"root:x:0:0:root:{home if ident.uid == 0 else '/root'}:/bin/sh"}
    users[ident.uid] = f"{ident.user}:x:{ident.uid}:{ident.gid}::{home}:/bin/sh"
    users.setdefault(65534, "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
    groups = {0: "root:x:0:", ident.gid: f"{ident.group}:x:{ident.gid}:"}
    groups.setdefault(65534, "nogroup:x:65534:")
    hosts = (
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    return [
        File("/etc/passwd", ("\n".join(users[k] for k in sorted(users)) + "\n").encode()),
        File("/etc/group", ("\n".join(groups[k] for k in sorted(groups)) + "\n").encode()),
        File("/etc/hostname", f"{hostname}\n".encode()),
        File("/etc/hosts", hosts.encode()),
    ]


def _executable_ops(bound: Sequence[str]) -> list[Op]:
    """``sys.executable`` at its own path, and each symlink on the way to the real file
    (a venv's ``bin/python`` -> ``/usr/bin/python3`` -> ``python3.11``), where no bind
    shows it already."""
    ops: list[Op] = []
    path, seen = os.path.abspath(sys.executable), set()
    while path not in seen:
        seen.add(path)
        link = os.path.islink(path)
        if not any(is_under(path, p) for p in bound):
            ops.append(Symlink(path, os.readlink(path)) if link else Bind(path, path, is_file=True))
        if not link:
            break
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    return ops


def _dev_ops(tmpfs_size: int | None = None) -> list[Op]:
    # mknod(2) is EPERM in a user namespace: bind the host's nodes instead (bubblewrap --dev).
    ops: list[Op] = [Tmpfs("/dev", 0o755)]
    ops += [Bind(f"/dev/{n}", f"/dev/{n}", readonly=False, is_file=True) for n in DEV_NODES]
    ops += [Symlink(f"/dev/{name}", link) for name, link in DEV_LINKS]
    ops += [Tmpfs("/dev/shm", 0o1777, tmpfs_size), Devpts("/dev/pts"), ReadOnly("/dev")]
    return ops


def choose_home(ident: Identity, occupied: Sequence[str], *, host_tree: bool = False) -> str:
    """HOME is a fresh empty tmpfs. Use the host's HOME path unless something the
    container needs lives under it (pyenv under /root, a project in ~): then a neutral
    path, so HOME really is empty. Over the read-only host tree a mount point must
    already exist, so there the fallback lives in the fresh /tmp."""
    candidates = [ident.home, f"/home/{ident.user}"]
    if host_tree:
        candidates = [c for c in candidates if os.path.isdir(c)]
        candidates.append(f"/tmp/home-{ident.user}")
    else:
        candidates.append("/home/sandbox")
    for home in candidates:
        if home.startswith("/") and home != "/" and not any(is_under(p, home) for p in occupied):
            return home
    return candidates[-1]


def _order(ops: list[Op]) -> tuple[Op, ...]:
    # Parents before children; a ReadOnly of a mount after everything inside it.
    def key(op: Op) -> tuple[tuple[str, ...], int]:
        parts = tuple(p for p in op.target.split("/") if p)
        if isinstance(op, ReadOnly):
            return ((*parts, "\uffff"), 2)
        return (parts, 1 if isinstance(op, Overlay) else 0)  # over a bind at its path

    return tuple(sorted(ops, key=key))


def build_plan(
    *,
    rootfs: str,
    ident: Identity,
    hostname: str,
    ro_paths: Iterable[str],
    cwd: str,
    mounts: Iterable[tuple[str, str]] = (),
    state_dir: str,
    writable: Iterable[str] = (),
    tmpfs_size: int | None = None,
) -> Plan:
    """The operations that build a root of kind ``rootfs`` ("minimal" or "host").

    ``state_dir`` is a private host directory for files a read-only host tree cannot
    hold (``/etc/hostname`` and ``/etc/hosts`` over the host's own, for ``rootfs="host"``).
    Each ``writable`` path (absolute) becomes a copy-on-write overlay of what the
    container would otherwise see there; ``tmpfs_size`` bounds every fresh tmpfs.
    """
    mounts = list(mounts)
    needed = outermost(os.path.realpath(p) for p in ro_paths)
    ops: list[Op] = []
    if rootfs == "host":
        # The whole host tree, read-only; the fresh /tmp, /var/tmp and HOME below cover
        # parts of it, so what the test needs from there is bound again on top.
        scratch = [p for p in ("/tmp", "/var/tmp") if os.path.isdir(p)]
        home = choose_home(ident, needed, host_tree=True)
        ops.append(Bind("/", "/"))
        covered = [*scratch, home]
        for real_home in sorted({ident.home, ident.account_home}):
            # The user's real home stays hidden even when HOME moved (pyenv or a venv
            # under it): an empty read-only tmpfs, with what the test needs bound again.
            if real_home not in ("", "/", home) and os.path.isdir(real_home):
                ops += [Tmpfs(real_home, 0o755), ReadOnly(real_home)]
                covered.append(real_home)
        ops += [Bind(p, p) for p in needed if any(is_under(p, s) for s in covered)]
        for op in _identity_ops(ident, home, hostname)[2:]:  # hostname and hosts
            assert isinstance(op, File)
            source = os.path.join(state_dir, f"{hostname}.{os.path.basename(op.target)}")
            with open(source, "wb") as f:
                f.write(op.content)
            ops.append(Bind(source, op.target, readonly=True, is_file=True))
        empty = os.path.join(state_dir, "empty")
        open(empty, "wb").close()
        ops += [Bind(empty, p, is_file=True) for p in HOST_MASKED_FILES if os.path.isfile(p)]
        for path in HOST_MASKED_DIRS:
            if os.path.isdir(path) and not os.path.islink(path):
                ops += [Tmpfs(path, 0o755), ReadOnly(path)]
    elif rootfs != "minimal":
        # A directory: an image's root. What the test needs of the host (the running
        # Python, the project) is bound in at the same paths; /etc gets what names this
        # container (its hostname, the host's resolver) over the image's own.
        # A Python installed in /usr would bring the host's whole /usr over the image's:
        # bind its own directories (sys.path, imported packages) and the interpreter.
        system = {"/usr", "/usr/local", *(f"/{name}" for name in SYSTEM_DIRS)}
        needed = outermost(p for p in map(os.path.realpath, ro_paths) if p not in system)
        ops += [Bind(p, p) for p in needed]
        ops += _executable_ops(needed)
        home = choose_home(ident, needed + [inside for inside, _ in mounts])
        ops += _identity_ops(ident, home, hostname)[2:]
        ops += [op for op in _etc_ops() if op.target == "/etc/resolv.conf"]
        scratch = ["/tmp", "/var/tmp"]
    else:
        ro = list(needed)
        for name in SYSTEM_DIRS:
            path = f"/{name}"
            if os.path.islink(path):
                ops.append(Symlink(path, os.readlink(path)))
            elif os.path.isdir(path):
                ro.append(path)
        ro = outermost(ro)
        ops += [Bind(p, p) for p in ro]
        ops += _etc_ops()
        home = choose_home(ident, ro + [inside for inside, _ in mounts])
        ops += _identity_ops(ident, home, hostname)
        scratch = ["/tmp", "/var/tmp"]
    ops += [Tmpfs(p, 0o1777, tmpfs_size) for p in scratch]
    ops.append(Tmpfs(home, 0o700, tmpfs_size))
    ops += [Bind(host, inside) for inside, host in mounts]
    ops += _dev_ops(tmpfs_size)
    # Copy-on-write views: over what the container sees at that path (a bind of the host,
    # the root's own files), so they never show more of the host than it would. Paths in
    # a fresh tmpfs are writable already. A bind *at* the path is its lower layer; binds
    # below it stay on top, as they are.
    ops += [Overlay(path) for path in outermost(writable) if not _in_fresh_tmpfs(path, ops)]
    ops.append(Proc("/proc"))
    ops += [ReadOnlyCover(f"/proc/{name}") for name in PROC_COVERS]
    if ident.uid != 0:  # so that containers can be made inside this one
        ops.append(HiddenProc())
    # The working directory must exist inside: if the deepest mount above it is not a
    # bind of the host's tree, create it there, empty.
    if not isinstance(_deepest_mount(cwd, ops), Bind | Overlay):
        ops.append(Dir(cwd))
    image = rootfs if rootfs not in ("minimal", "host") else None
    return Plan(_order(ops), home, tmpfs_size=tmpfs_size, image=image)


def _deepest_mount(path: str, ops: Sequence[Op]) -> Op | None:
    """The mount the container sees ``path`` through (None: the root's own files)."""
    above = [op for op in ops if isinstance(op, MOUNTS) and is_under(path, op.target)]
    return max(above, key=lambda op: op.target.count("/") + len(op.target), default=None)


def _in_fresh_tmpfs(path: str, ops: Sequence[Op]) -> bool:
    """Whether ``path`` is writable already: in a fresh tmpfs (/tmp, HOME), not in a bind
    of the host's tree under one."""
    deepest = _deepest_mount(path, ops)
    return isinstance(deepest, Tmpfs) and not any(
        isinstance(op, ReadOnly) and op.target == deepest.target for op in ops
    )


def prepare(plan: Plan, directory: str) -> Plan:
    """Write, once and on the host, every part of the root that is not a mount.

    Directories, mount points, the /etc files, symlinks and the read-only /dev are created
    under ``directory`` (the *skeleton*); containers bind it read-only as their root and
    only mount on top of it, instead of recreating it in a tmpfs each time. What lies
    under a fresh tmpfs or under a bind of the host's tree stays in the plan: it can only
    be created once those are mounted.
    """

    if plan.image is not None:
        return plan  # an image's root is its own skeleton; everything happens in apply

    def materialisable(target: str, covers: list[str]) -> bool:
        return not any(is_under(target, c) and target != c for c in covers)

    # A tmpfs made read-only once populated is the same as a read-only skeleton directory,
    # where the skeleton itself shows at that place (not under a bind of the host's tree).
    # An overlay hides nothing: what lies below it is its lower layer.
    mounts = [op.target for op in plan.ops if isinstance(op, COVERS)]
    sealed = {
        op.target
        for op in plan.ops
        if isinstance(op, ReadOnly) and materialisable(op.target, mounts)
    }
    ops = [op for op in plan.ops if not (op.target in sealed and isinstance(op, Tmpfs | ReadOnly))]
    covers = [op.target for op in ops if isinstance(op, COVERS)]

    os.makedirs(directory, 0o755, exist_ok=True)
    os.chmod(directory, 0o755)
    kept: list[Op] = []
    for op in ops:
        if not materialisable(op.target, covers):
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
    return dataclasses.replace(plan, ops=tuple(kept), skeleton=directory)


# --- applying a plan (inside the container's init, after clone) -----------------------------


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
    root = plan.image or plan.skeleton
    if root is None:
        raise RootfsError(errno.EINVAL, "the plan was not prepared (no skeleton)")
    ops = (
        *plan.ops,
        *(Bind(path, path, readonly=False) for path in rw_binds),
        *(Bind(source, target, is_file=True) for source, target in files),
    )
    # === MOUNT PROPAGATION ===
    mnt.mount(None, "/", None, MS.REC | MS.PRIVATE)
    # === PIN BIND SOURCES === (before the new root covers any of them)
    sources: dict[str, int] = {}
    for bind in (Bind(root, "/"), *(op for op in ops if isinstance(op, Bind))):
        if bind.source not in sources:
            try:
                sources[bind.source] = mnt.open_path(bind.source)
            except OSError as exc:
                raise RootfsError(
                    exc.errno or errno.EIO, f"cannot open bind source {bind.source}: {exc.strerror}"
                ) from None
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
        _image_root(plan.image, sources[plan.image], base, store)
    else:
        mnt.mount(mnt.fd_path(sources[root]), base, None, MS.BIND, label=root)
    for op in ops:
        target = base + op.target if op.target != "/" else base
        try:
            if isinstance(op, Overlay):
                assert store is not None
                _overlay(op, target, store)
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
    # === PIVOT_ROOT === (never chroot: a process with CAP_SYS_CHROOT escapes a chroot)
    os.chdir(base)
    mnt.pivot_root(".", ".")
    mnt.umount2(".", mnt.MNT_DETACH)
    os.chdir("/")
    return store


def _image_root(image: str, image_fd: int, base: str, store: Store) -> None:
    """The root of an image directory: an overlay whose upper layer (in the store, not a
    layer of :func:`changes`) takes the mount points and /etc files the container adds;
    it is made read-only with the rest of the root."""
    mode = stat.S_IMODE(os.fstat(image_fd).st_mode) | 0o700
    _mount_overlay(image_fd, base, store, "root", mode, f"rootfs {image}", image)


def _overlay(op: Overlay, target: str, store: Store) -> None:
    """A copy-on-write view of what is at ``target`` now, mounted over it."""
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
    _mount_overlay(lower, target, store, str(layer), mode, f"writable path {op.target}", target)


def _mount_overlay(
    lower: int, target: str, store: Store, layer: str, mode: int, what: str, where: str
) -> None:
    """overlayfs(5) over ``target``: the directory of fd ``lower`` below, the store's
    ``layer`` above (``userxattr``: its bookkeeping in ``user.overlay.*`` xattrs, as a user
    namespace must, Linux 5.11). Paths as fds: a comma or colon in a path would split
    overlay's option string."""
    os.mkdir(store.path(layer))
    os.mkdir(store.path(layer, "upper"), mode)
    os.mkdir(store.path(layer, "work"), 0o700)
    options = (
        f"lowerdir={mnt.fd_path(lower)},upperdir={store.path(layer, 'upper')},"
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
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields, _, tail = line.partition(" - ")
                point = fields.split()[4].replace("\\040", " ")
                if is_under(path, point) and len(point) >= len(best):
                    best, kind = point, tail.split()[0]
    except (OSError, IndexError):
        pass
    return kind


#: What :func:`changes` says of a path.
CHANGE_KINDS = ("added", "modified", "deleted")
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
