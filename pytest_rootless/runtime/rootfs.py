"""Building the root filesystem's mount plan, on the host, once per session and set of
options (the plan's operations are :mod:`.mountplan`; a container's init applies it with
:mod:`.child.mounts`).

Following bubblewrap, the plan is computed once as an ordered tuple of operations, and
:func:`make_skeleton` makes the skeleton every container binds as its new root; a container
only *applies* the plan."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..kernel.paths import is_under
from .mountplan import (
    COVERS,
    MOUNTS,
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
# Files of the fresh /proc hidden under /dev/null, as Docker masks them: the kernel's
# keyrings are not namespaced, and /proc/keys would list every key the test's uid may view,
# the host's included (keyrings(7); the seccomp filter refuses every keyring call).
PROC_MASKED = ("keys", "key-users")


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
    binds = list(mounts)
    needed = [os.path.realpath(p) for p in ro_paths]
    if rootfs == "host":
        ops, home, scratch = _host_root(ident, outermost(needed), hostname, state_dir)
    elif rootfs != "minimal":
        ops, home, scratch = _image_root(ident, needed, binds, hostname)
    else:
        ops, home, scratch = _minimal_root(ident, outermost(needed), binds, hostname)
    ops += [Tmpfs(p, 0o1777, tmpfs_size) for p in scratch]
    ops.append(Tmpfs(home, 0o700, tmpfs_size))
    ops += [Bind(host, inside) for inside, host in binds]
    ops += _dev_ops(tmpfs_size)
    # Copy-on-write views: over what the container sees at that path (a bind of the host,
    # the root's own files), so they never show more of the host than it would. Paths in
    # a fresh tmpfs are writable already. A bind *at* the path is its lower layer; binds
    # below it stay on top, as they are.
    ops += [Overlay(path) for path in outermost(writable) if not _in_fresh_tmpfs(path, ops)]
    ops.append(Proc("/proc"))
    ops += [ReadOnlyCover(f"/proc/{name}") for name in PROC_COVERS]
    masked = [name for name in PROC_MASKED if os.path.exists(f"/proc/{name}")]
    ops += [Bind("/dev/null", f"/proc/{name}", is_file=True) for name in masked]
    if ident.uid != 0:  # so that containers can be made inside this one
        ops.append(HiddenProc())
    # The working directory must exist inside: if the deepest mount above it is not a
    # bind of the host's tree, create it there, empty.
    if not isinstance(_deepest_mount(cwd, ops), Bind | Overlay):
        ops.append(Dir(cwd))
    image = rootfs if rootfs not in ("minimal", "host") else None
    return Plan(_order(ops), home, tmpfs_size=tmpfs_size, image=image)


#: What a kind of root starts with: its operations, the home directory, the scratch dirs.
_Start = tuple[list[Op], str, list[str]]


def _host_root(ident: Identity, needed: list[str], hostname: str, state_dir: str) -> _Start:
    """The whole host tree, read-only; the fresh /tmp, /var/tmp and HOME below cover
    parts of it, so what the test needs from there is bound again on top."""
    scratch = [p for p in ("/tmp", "/var/tmp") if os.path.isdir(p)]
    home = choose_home(ident, needed, host_tree=True)
    ops: list[Op] = [Bind("/", "/")]
    covered = [*scratch, home]
    for real_home in sorted({ident.home, ident.account_home}):
        # The user's real home stays hidden even when HOME moved (pyenv or a venv
        # under it): an empty read-only tmpfs, with what the test needs bound again.
        if real_home not in ("", "/", home) and os.path.isdir(real_home):
            ops += [Tmpfs(real_home, 0o755), ReadOnly(real_home)]
            covered.append(real_home)
    ops += [Bind(p, p) for p in needed if any(is_under(p, s) for s in covered)]
    ops += _host_names(ident, home, hostname, state_dir)
    ops += _host_masks(state_dir)
    return ops, home, scratch


def _host_names(ident: Identity, home: str, hostname: str, state_dir: str) -> list[Op]:
    """/etc/hostname and /etc/hosts, written in ``state_dir`` and bound over the host's."""
    ops: list[Op] = []
    for op in _identity_ops(ident, home, hostname)[2:]:  # hostname and hosts
        assert isinstance(op, File)
        source = os.path.join(state_dir, f"{hostname}.{os.path.basename(op.target)}")
        with open(source, "wb") as f:
            f.write(op.content)
        ops.append(Bind(source, op.target, readonly=True, is_file=True))
    return ops


def _host_masks(state_dir: str) -> list[Op]:
    """An empty file over each of HOST_MASKED_FILES, an empty tmpfs over HOST_MASKED_DIRS."""
    empty = os.path.join(state_dir, "empty")
    open(empty, "wb").close()
    ops: list[Op] = [Bind(empty, p, is_file=True) for p in HOST_MASKED_FILES if os.path.isfile(p)]
    for path in HOST_MASKED_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            ops += [Tmpfs(path, 0o755), ReadOnly(path)]
    return ops


def _image_root(
    ident: Identity, ro_paths: list[str], mounts: list[tuple[str, str]], hostname: str
) -> _Start:
    """A directory: an image's root. What the test needs of the host (the running
    Python, the project) is bound in at the same paths; /etc gets what names this
    container (its hostname, the host's resolver) over the image's own."""
    # A Python installed in /usr would bring the host's whole /usr over the image's:
    # bind its own directories (sys.path, imported packages) and the interpreter.
    system = {"/usr", "/usr/local", *(f"/{name}" for name in SYSTEM_DIRS)}
    needed = outermost(p for p in ro_paths if p not in system)
    ops: list[Op] = [Bind(p, p) for p in needed]
    ops += _executable_ops(needed)
    home = choose_home(ident, needed + [inside for inside, _ in mounts])
    ops += _identity_ops(ident, home, hostname)[2:]
    ops += [op for op in _etc_ops() if op.target == "/etc/resolv.conf"]
    return ops, home, ["/tmp", "/var/tmp"]


def _minimal_root(
    ident: Identity, needed: list[str], mounts: list[tuple[str, str]], hostname: str
) -> _Start:
    """The system directories and what the test needs, read-only; an /etc of our own."""
    ro = list(needed)
    ops: list[Op] = []
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
    return ops, home, ["/tmp", "/var/tmp"]


def _deepest_mount(path: str, ops: Sequence[Op]) -> Op | None:
    """The mount the container sees ``path`` through (None: the root's own files)."""
    above = [op for op in ops if isinstance(op, MOUNTS) and is_under(path, op.target)]
    return max(above, key=lambda op: op.target.count("/") + len(op.target), default=None)


def shows_host_file(plan: Plan, path: str) -> bool:
    """Whether a container of ``plan`` sees the host's own file at the absolute ``path``:
    through a bind of the host's tree at the same place (a writable path's overlay keeps
    that bind below it), not a fresh tmpfs, the root's own files or an image's."""
    covers = [op for op in plan.ops if isinstance(op, COVERS) and is_under(path, op.target)]
    if not covers:
        return False
    # the deepest; of two on one place, the later (it is mounted over the other)
    _, deepest = max(enumerate(covers), key=lambda pair: (len(pair[1].target), pair[0]))
    return isinstance(deepest, Bind) and deepest.source == deepest.target


def _in_fresh_tmpfs(path: str, ops: Sequence[Op]) -> bool:
    """Whether ``path`` is writable already: in a fresh tmpfs (/tmp, HOME), not in a bind
    of the host's tree under one."""
    deepest = _deepest_mount(path, ops)
    return isinstance(deepest, Tmpfs) and not any(
        isinstance(op, ReadOnly) and op.target == deepest.target for op in ops
    )
