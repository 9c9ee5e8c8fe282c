"""``python -m pytest_rootless doctor``: what this host allows, one capability at a time.

Each check prints one line, ``ok``, ``missing`` (isolation cannot work until it is
fixed), ``optional`` (only some features need it) or ``untried``, then, when something
is wrong, why it matters and the fix. The exit status is 1 when anything needed is
missing, so a CI job can run the doctor first.

Two kinds of evidence, as in :mod:`..runtime.probe`:

* files the kernel and the distribution keep (sysctls, ``/proc/self/status``,
  ``/proc/self/mountinfo``, ``/proc/self/cgroup``, ``/etc/subuid``...), read under
  :attr:`Host.root`, so a test can point the doctor at a simulated host;
* *trials*: a forked child tries the real thing (a user namespace, an id map, mounts,
  a fresh ``/proc``, overlayfs) in namespaces of its own, then exits; and one real
  container is started by the runtime itself. The kernel's answer wins over what the
  files suggest; the files explain a refusal. Trials can be turned off (a simulated
  host, ``--no-trials``), and a test can hand in canned answers (:class:`Trial`).

Code after ``fork`` here follows CPython's discipline (``multiprocessing/popen_fork.py``):
it touches no pytest state, reports through a pipe as JSON, and leaves only through
``os._exit`` in a ``finally``.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import pwd
import stat
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TextIO

from ..kernel import mount as mnt
from ..kernel import procfs
from ..kernel import syscalls as sc
from ..kernel.paths import in_root, is_under
from ..kernel.procfs import Mount
from ..runtime import limits as limits_mod
from ..runtime import probe
from ..runtime.session import ContainerSession

OK, MISSING, OPTIONAL, UNTRIED = "ok", "missing", "optional", "untried"

#: Directories of procfs (relative to its root) that the kernel declares permanently empty
#: (``register_sysctl_mount_point``, ``proc_create_mount_point``): a mount on one of them
#: hides nothing, so it does not stop a fresh proc mount (fs/namespace.c,
#: ``mnt_already_visible``). systemd mounts binfmt_misc on most hosts.
EMPTY_PROC_DIRS = frozenset({"/sys/fs/binfmt_misc", "/fs/nfsd"})


@dataclass(frozen=True)
class Host:
    """Where the doctor reads a host's facts: ``root`` (``/`` for this machine, a
    directory for a simulated one), the user asking, and whether to run kernel trials
    (forked children in new namespaces; they always test *this* kernel)."""

    root: str = "/"
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    live: bool = True

    def path(self, path: str) -> str:
        return in_root(self.root, path)

    def read(self, path: str) -> str | None:
        return procfs.read(path, self.root)

    def user_name(self) -> str:
        for line in (self.read("/etc/passwd") or "").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2] == str(self.uid):
                return fields[0]
        if self.root == "/":
            try:  # users from NSS (LDAP, systemd-homed) are not in /etc/passwd
                return pwd.getpwuid(self.uid).pw_name
            except KeyError:
                pass
        return str(self.uid)


@dataclass(frozen=True)
class Trial:
    """The kernel's answer to one trial: the failing call, its errno and message."""

    ok: bool
    call: str | None = None
    errno: int | None = None
    message: str = ""


@dataclass(frozen=True)
class Check:
    """One line of the report: what was found, and for a problem why it matters and the fix."""

    name: str
    status: str
    found: str
    fix: tuple[str, ...] = ()
    why: str = ""


# --- reading the host -----------------------------------------------------------------------


def kernel_version(host: Host) -> tuple[int, int] | None:
    release = host.read("/proc/sys/kernel/osrelease") or ""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "0")
    except (IndexError, ValueError):
        return None


def _cause_and_fix(reason: str) -> tuple[str, tuple[str, ...]]:
    cause, sep, fix = reason.partition("; fix: ")
    return cause, (fix,) if sep else ()


# --- trials: the kernel's answers -----------------------------------------------------------


class _Failed(Exception):
    """A nested trial failed; carries its answer up to the first child."""

    def __init__(self, trial: Trial) -> None:
        super().__init__(trial.message)
        self.trial = trial


def _answer(steps: Callable[[], None]) -> Trial:
    try:
        steps()
    except _Failed as failed:
        return failed.trial
    except OSError as exc:
        return Trial(False, getattr(exc, "call", None), exc.errno, str(exc))
    except Exception as exc:  # a bug of ours, reported rather than lost with the child
        return Trial(False, None, None, f"{type(exc).__name__}: {exc}")
    return Trial(True)


def in_child(steps: Callable[[], None]) -> Trial:
    """Run ``steps`` in a forked child and return how it went. Namespaces the child
    creates die with it: nothing the trial does is seen by this process."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    # sc.fork (os.fork, its 3.12 warning about threads acknowledged for this call, and
    # stdio flushed first): the child has one thread, so unshare(CLONE_NEWUSER) is
    # allowed there (user_namespaces(7): EINVAL with threads).
    pid = sc.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(asdict(_answer(steps))).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        code = os.waitstatus_to_exitcode(status)
        return Trial(False, None, None, f"the trial process ended with status {code} first")
    return Trial(**json.loads(b"".join(chunks)))


NS = sc.CloneFlag
MS = mnt.MountFlag


def _own_user_namespace(more: sc.CloneFlag | None = None) -> None:
    """A new user namespace (plus ``more``) mapping our own uid and gid, as a container's
    init does (user_namespaces(7): setgroups deny, then the one-line maps)."""
    uid, gid = os.getuid(), os.getgid()
    sc.unshare(NS.NEWUSER if more is None else NS.NEWUSER | more)
    sc.write_id_maps(uid, uid, gid, gid)


def _try_userns() -> None:
    sc.unshare(NS.NEWUSER)


def _try_mounts(scratch: str) -> None:
    _own_user_namespace(NS.NEWNS)
    mnt.mount(None, "/", None, MS.REC | MS.PRIVATE)  # nothing we mount propagates out
    mnt.mount("tmpfs", scratch, "tmpfs", MS.NOSUID | MS.NODEV, "mode=0755")
    sealed = os.path.join(scratch, "sealed")
    os.mkdir(sealed)
    mnt.mount(sealed, sealed, None, MS.BIND | MS.REC)
    mnt.mount_setattr(sealed, mnt.MOUNT_ATTR_RDONLY)
    try:
        os.close(os.open(os.path.join(sealed, "probe"), os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
    else:
        raise _Failed(Trial(False, "mount_setattr", None, "a read-only bind stayed writable"))
    os.chdir(scratch)  # pivot_root(2) NOTES: new_root and put_old may be the same, "."
    mnt.pivot_root(".", ".")
    mnt.umount2(".", mnt.MNT_DETACH)
    os.chdir("/")


def _try_proc(scratch: str) -> None:
    _own_user_namespace(NS.NEWNS | NS.NEWPID)

    def as_pid_1() -> None:
        # proc shows the PID namespace of the process that mounts it: the one that
        # unshared is not in it, its first child is (pid_namespaces(7)).
        mnt.mount(None, "/", None, MS.REC | MS.PRIVATE)
        mnt.mount("proc", scratch, "proc", MS.NOSUID | MS.NODEV | MS.NOEXEC)
        pids = [name for name in os.listdir(scratch) if name.isdigit()]
        if pids != ["1"]:
            raise _Failed(Trial(False, "proc", None, f"the new proc shows pids {pids[:5]}"))

    inner = in_child(as_pid_1)
    if not inner.ok:
        raise _Failed(inner)


def _try_overlay(scratch: str) -> None:
    _own_user_namespace(NS.NEWNS)
    mnt.mount(None, "/", None, MS.REC | MS.PRIVATE)
    mnt.mount("tmpfs", scratch, "tmpfs", MS.NOSUID | MS.NODEV, "mode=0755")
    lower, upper, work, merged = (os.path.join(scratch, d) for d in ("l", "u", "w", "m"))
    for directory in (lower, upper, work, merged):
        os.mkdir(directory)
    # userxattr: keep overlay's own metadata in user.* xattrs, the ones an unprivileged
    # mounter may write (overlayfs.rst, Linux 5.11)
    mnt.mount(
        "overlay",
        merged,
        "overlay",
        MS.NONE,
        f"lowerdir={lower},upperdir={upper},workdir={work},userxattr",
    )
    with open(os.path.join(merged, "written"), "w") as f:
        f.write("copy-on-write")
    if not os.path.exists(os.path.join(upper, "written")):
        raise _Failed(Trial(False, "overlay", None, "a write did not land in the upper dir"))


def _with_scratch(steps: Callable[[str], None]) -> Trial:
    # The child mounts over this directory in its own mount namespace only; here it stays
    # an empty directory, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="rootless-doctor-") as scratch:
        return in_child(lambda: steps(scratch))


def _try_container() -> Trial:
    containers = ContainerSession()
    try:
        support = containers.probe()
    finally:
        containers.close()
    return Trial(support.ok, message=support.reason)


TRIALS: dict[str, Callable[[], Trial]] = {
    "userns": lambda: in_child(_try_userns),
    "idmap": lambda: in_child(_own_user_namespace),
    "mounts": lambda: _with_scratch(_try_mounts),
    "proc": lambda: _with_scratch(_try_proc),
    "overlay": lambda: _with_scratch(_try_overlay),
    "container": _try_container,
}


class Trials:
    """Trials run on demand, once each; ``answers`` (a test's canned ones) come first."""

    def __init__(self, host: Host, answers: Mapping[str, Trial] | None = None) -> None:
        self.host = host
        self.answers = dict(answers or {})

    def get(self, name: str) -> Trial | None:
        if name not in self.answers:
            if not self.host.live:
                return None
            self.answers[name] = TRIALS[name]()
        return self.answers[name]


def _refusal(host: Host, trial: Trial) -> tuple[str, tuple[str, ...]]:
    problem = probe.explain(trial.call, trial.errno, trial.message, host.root, host.uid)
    if problem.fix:
        return problem.cause, (problem.fix,)
    return trial.message, (
        "this kernel or a security module refuses it; `pytest --rootless-trace` shows "
        "each step of a container",
    )


# --- the checks -----------------------------------------------------------------------------

WHY_USERNS = (
    "every container starts with a user namespace: it is what lets an ordinary user "
    "create the others (mount, PID, network) and be 'root' in them only"
)
WHY_PROC = (
    "the container needs a /proc of its own PID namespace; the kernel shows a new proc "
    "only if a proc already visible here hides nothing (fs/namespace.c, "
    "mnt_already_visible)"
)


def check_kernel(host: Host) -> Check:
    name = "kernel"
    problem = probe.static_problem()
    if problem:
        cause, fix = _cause_and_fix(problem)
        return Check(name, MISSING, cause, fix)
    release = host.read("/proc/sys/kernel/osrelease")
    version = kernel_version(host)
    if version is None:
        return Check(
            name,
            MISSING,
            "cannot read the kernel version from /proc/sys/kernel/osrelease",
            ("mount proc on /proc: mount -t proc proc /proc",),
        )
    if version < (5, 12):
        return Check(
            name,
            MISSING,
            f"Linux {release}: mount_setattr(2), which makes a bind and every mount below it "
            "read-only in one call, is Linux 5.12+",
            ("upgrade the kernel to Linux 5.12 or newer",),
        )
    return Check(
        name,
        OK,
        f"Linux {release} on {platform.machine()} (5.12+: mount_setattr(2) for read-only binds)",
    )


def check_userns(host: Host, trials: Trials) -> Check:
    name = "user namespaces"
    problems = probe.userns_sysctls(host.root, host.uid)
    if problems:
        return Check(
            name,
            MISSING,
            "; ".join(p.cause for p in problems),
            tuple(p.fix for p in problems),
            WHY_USERNS,
        )
    trial = trials.get("userns")
    if trial is None:
        return Check(name, OK, "no sysctl forbids them (not tried)")
    if not trial.ok:
        cause, fix = _refusal(host, trial)
        return Check(name, MISSING, cause, fix, WHY_USERNS)
    found = "unshare(CLONE_NEWUSER) worked in a forked child"
    if probe.seccomp_filtered(host.root):
        found += " (a seccomp filter is on, and allows it)"
    return Check(name, OK, found)


def check_id_maps(host: Host, trials: Trials) -> Check:
    name = "id maps"
    why = (
        "a new user namespace maps no uid until /proc/PID/uid_map is written; unmapped, the "
        "test would run as 'nobody'"
    )
    problem = probe.root_without_setfcap(host.root, host.uid)
    if problem:
        return Check(name, MISSING, problem.cause, (problem.fix,), why)
    trial = trials.get("idmap")
    if trial is not None and not trial.ok:
        cause, fix = _refusal(host, trial)
        return Check(name, MISSING, cause, fix, why)
    found = f"one-line maps of your own ids: uid {host.uid} -> {host.uid}, gid {host.gid} -> "
    found += f"{host.gid} (setgroups 'deny' first)"
    if host.uid == 0:
        found += "; mapping uid 0 needs CAP_SETFCAP (Linux 5.12+), which this process has"
    return Check(name, OK, found + (" (not tried)" if trial is None else ""))


def check_mounts(host: Host, trials: Trials) -> Check:
    name = "mounts and pivot_root"
    why = "the container's root is a tmpfs with read-only binds, entered with pivot_root(2)"
    root_mount = [m for m in procfs.mountinfo(host.root) if m.point == "/"]
    if root_mount and root_mount[-1].fstype == "rootfs":
        return Check(
            name,
            MISSING,
            "/ is the initial ramfs (rootfs), which pivot_root(2) cannot move (EINVAL)",
            ("run from a real root filesystem (initramfs images switch_root into one)",),
            why,
        )
    trial = trials.get("mounts")
    if trial is None:
        return Check(name, OK, "a private mount namespace with tmpfs and binds (not tried)")
    if not trial.ok:
        cause, fix = _refusal(host, trial)
        return Check(name, MISSING, cause, fix, why)
    return Check(
        name,
        OK,
        "in a new mount namespace: private propagation, a tmpfs, a read-only bind "
        "(mount_setattr) that refused a write, pivot_root into the tmpfs",
    )


def proc_over_mounts(mounts: Iterable[Mount]) -> tuple[list[Mount], dict[str, list[str]]]:
    """Every whole proc mount, and for each the mounts that hide part of it."""
    mounts = list(mounts)
    procs = [m for m in mounts if m.fstype == "proc" and m.root == "/"]
    hiding = {
        proc.point: [
            m.point
            for m in mounts
            if m.point != proc.point
            and is_under(m.point, proc.point)
            and m.point[len(proc.point.rstrip("/")) :] not in EMPTY_PROC_DIRS
        ]
        for proc in procs
    }
    return procs, hiding


def check_proc(host: Host, trials: Trials) -> Check:
    name = "fresh /proc"
    procs, hiding = proc_over_mounts(procfs.mountinfo(host.root))
    visible = [point for point, hidden in hiding.items() if not hidden]
    covered = sorted({p for hidden in hiding.values() for p in hidden})
    trial = trials.get("proc")
    if trial is not None and trial.ok:
        found = "a new proc mounted in a new PID namespace shows only its PID 1"
        if covered and visible:
            found += f" (the proc at {visible[0]} hides nothing, and the kernel accepts that)"
        return Check(name, OK, found)
    if not procs:
        return Check(
            name,
            MISSING,
            "no proc is mounted here",
            ("mount -t proc proc /proc",),
            WHY_PROC,
        )
    if not visible:
        shown = ", ".join(covered[:6]) + (", ..." if len(covered) > 6 else "")
        return Check(
            name,
            MISSING,
            f"/proc is masked: mounts over {shown} hide parts of it, so the kernel refuses "
            "a new proc (EPERM)",
            (
                "run with an unmasked /proc (docker run --security-opt "
                "systempaths=unconfined; podman run --security-opt unmask=ALL), not from "
                "inside an isolated test",
            ),
            WHY_PROC,
        )
    if trial is None:
        return Check(name, OK, f"nothing hides parts of the proc at {visible[0]} (not tried)")
    cause, fix = _refusal(host, trial)
    return Check(name, MISSING, cause, fix, WHY_PROC)


def check_container(host: Host, trials: Trials) -> Check:
    name = "trial container"
    trial = trials.get("container")
    if trial is None:
        return Check(name, UNTRIED, "no container was started (no kernel trials)")
    if not trial.ok:
        cause, fix = _cause_and_fix(trial.message)
        return Check(name, MISSING, cause, fix, "the runtime's own container, as a test gets it")
    return Check(name, OK, "a real container started and ended, as an isolated test's would")


def _subid_ranges(host: Host, path: str, user: str) -> list[tuple[int, int]]:
    ranges = []
    for line in (host.read(path) or "").splitlines():
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in (user, str(host.uid)):
            try:
                ranges.append((int(fields[1]), int(fields[2])))
            except ValueError:
                continue
    return ranges


def _helper_state(host: Host, program: str) -> str | None:
    """None when ``program`` is installed and may write maps for others (setuid root, or a
    file capability, as Fedora ships them); else what is wrong."""
    for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        path = host.path(f"{directory}/{program}")
        try:
            info = os.stat(path)
        except OSError:
            continue
        if info.st_mode & stat.S_ISUID and info.st_uid == 0:
            return None
        try:
            os.getxattr(path, "security.capability")
            return None
        except OSError:
            return f"{directory}/{program} is neither setuid root nor has file capabilities"
    return "not installed"


def check_subordinate_ids(host: Host) -> Check:
    name = "subordinate ids"
    if host.uid == 0:
        return Check(name, OK, "root writes any id map itself; no /etc/subuid or helper needed")
    user = host.user_name()
    found, fix = [], []
    uids = _subid_ranges(host, "/etc/subuid", user)
    gids = _subid_ranges(host, "/etc/subgid", user)
    if uids and gids:
        found.append(f"{user} owns {uids[0][1]} uids from {uids[0][0]}, {gids[0][1]} gids from")
        found[-1] += f" {gids[0][0]}"
    else:
        files = " and ".join(f for f, r in (("/etc/subuid", uids), ("/etc/subgid", gids)) if not r)
        found.append(f"no range for {user} in {files}")
        fix.append(f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}")
    helpers = {p: _helper_state(host, p) for p in ("newuidmap", "newgidmap")}
    absent = [p for p, state in helpers.items() if state == "not installed"]
    if absent:
        found.append(f"{' and '.join(absent)} {'are' if len(absent) > 1 else 'is'} not installed")
    found.extend(state for state in helpers.values() if state not in (None, "not installed"))
    if any(helpers.values()):
        fix.append("apt install uidmap (Debian, Ubuntu); dnf install shadow-utils (Fedora)")
    else:
        found.append("newuidmap and newgidmap are setuid")
    return Check(
        name,
        OPTIONAL if fix else OK,
        "; ".join(found),
        tuple(fix),
        "only for tests that need several uids inside: an unprivileged user maps just its "
        "own uid, and a range needs the setuid helpers newuidmap(1)/newgidmap(1)",
    )


def check_overlay(host: Host, trials: Trials) -> Check:
    name = "overlayfs in a user namespace"
    why = "copy-on-write views of read-only paths (the `writable` option) need it"
    version = kernel_version(host)
    if version is not None and version < (5, 11):
        return Check(
            name,
            OPTIONAL,
            "overlayfs mounts in a user namespace need Linux 5.11+",
            ("upgrade the kernel to Linux 5.11 or newer",),
            why,
        )
    trial = trials.get("overlay")
    if trial is None:
        listed = "overlay" in (host.read("/proc/filesystems") or "").split()
        if listed:
            return Check(name, OK, "overlay is in /proc/filesystems (not tried)")
        return Check(
            name, UNTRIED, "overlay is not in /proc/filesystems yet (loaded on first mount)"
        )
    if not trial.ok:
        return Check(
            name,
            OPTIONAL,
            trial.message,
            ("load the overlay module (modprobe overlay), or a kernel built with it",),
            why,
        )
    return Check(
        name,
        OK,
        "mounted with userxattr in a new user namespace; a write landed in the upper dir",
    )


@dataclass(frozen=True)
class Limits:
    """How the ``memory`` and ``pids`` options would be enforced here (``cpu`` is CPU
    *time*, which a cgroup does not bound: RLIMIT_CPU per process in every case)."""

    backend: str  # "cgroup v2", "cgroup v1 (root)", "rlimits", or a mix per controller
    found: str
    fix: tuple[str, ...] = ()


LIMITED = limits_mod.LIMITED


def limit_backend(host: Host, backend: limits_mod.Backend | None = None) -> Limits:
    """The backend the memory and pids options use here: ``backend`` when given, else the
    runtime's own choice (:func:`..runtime.limits.detect`: by a trial cgroup on a live
    host, by the files on a simulated one). The files explain why a controller falls back
    to rlimits, and the fix."""
    if backend is None:
        uid = None if host.live else host.uid
        backend = limits_mod.detect(host.root, trial=host.live, uid=uid)
    name = _backend_name(host, backend)
    if "rlimits" not in name:
        return Limits(
            name,
            f"{name}: a cgroup per container for memory and pids, every process of it "
            "counted together",
        )
    notes, fix = _cgroup_notes(host)
    notes = list(dict.fromkeys(notes)) or ["a trial cgroup could not be made"]
    found = (
        f"{name}: {'; '.join(notes)}. With rlimits (setrlimit(2)) RLIMIT_DATA bounds "
        "each process's memory, not the container's; RLIMIT_NPROC counts the container's "
        "processes (per user namespace, Linux 5.14+)"
    )
    if not backend.nproc_works and backend.pids is None:
        found += ", but not real root's: a pids limit is refused"
    if not fix:
        fix.append(
            "run on a cgroup v2 host in a delegated cgroup: systemd-run --user --scope "
            "-p Delegate=yes pytest ..."
        )
    return Limits(name, found, tuple(dict.fromkeys(fix)))


def _backend_name(host: Host, backend: limits_mod.Backend) -> str:
    """``cgroup v2``, ``cgroup v1 (root)``, ``rlimits``, or one of them per controller."""
    chosen = {}
    for controller, hierarchy in (("memory", backend.memory), ("pids", backend.pids)):
        if hierarchy is not None:
            chosen[controller] = hierarchy.describe()
            if hierarchy.version == 1 and host.uid == 0:
                chosen[controller] += " (root)"
    backends = {chosen.get(c, "rlimits") for c in LIMITED}
    if len(backends) == 1:
        return backends.pop()
    return ", ".join(f"{c} by {chosen.get(c, 'rlimits')}" for c in LIMITED)


def _cgroup_notes(host: Host) -> tuple[list[str], list[str]]:
    """Why, by the files, each cgroup hierarchy cannot hold a container's cgroup, and the fix."""
    notes: list[str] = []
    fix: list[str] = []
    v2 = [place for place in limits_mod.places(LIMITED[0], host.root) if place.version == 2]
    if not v2:
        notes.append("no cgroup v2 hierarchy is mounted")
    enabled: list[str] = []
    for place in v2:
        enabled = _v2_notes(host, place, notes, fix)
    # cgroup v1: one hierarchy per controller, in practice writable by root only.
    unwritable = [
        place.mount.point
        for controller in LIMITED
        if controller not in enabled
        for place in limits_mod.places(controller, host.root)
        if place.version == 1 and not place.delegated(host.root)
    ]
    if unwritable:
        notes.append(f"cgroup v1: {' and '.join(unwritable)} are not writable by you")
    return notes, fix


def _v2_notes(host: Host, place: limits_mod.Place, notes: list[str], fix: list[str]) -> list[str]:
    """cgroup v2 is one hierarchy. A container's cgroup would be a child of ours, so ours
    must be delegated to us, with the controllers enabled for children
    (cgroup.subtree_control). Adds to ``notes`` and ``fix``; returns the enabled ones."""
    directory = place.directory
    if directory is None:
        notes.append(f"cgroup v2 at {place.mount.point}: this process's cgroup is not visible")
        return []
    if not place.delegated(host.root):
        notes.append(f"cgroup v2: your cgroup {directory} is not delegated to you")
        fix.append(
            "run pytest in a delegated cgroup: systemd-run --user --scope -p Delegate=yes "
            "pytest ..."
        )
        return []
    available = place.listed("cgroup.controllers", host.root)
    enabled = place.listed("cgroup.subtree_control", host.root)
    idle = [c for c in LIMITED if c in available and c not in enabled]
    absent = [c for c in LIMITED if c not in available]
    if idle:
        notes.append(f"cgroup v2: {' and '.join(idle)} not enabled for children of {directory}")
        fix.append(
            f"enable them: echo '{' '.join('+' + c for c in idle)}' > "
            f"{directory}/cgroup.subtree_control (after moving this shell into a child "
            "cgroup: a cgroup with processes of its own cannot, the no-internal-process rule)"
        )
    if absent:
        notes.append(f"cgroup v2: {directory} has no {' or '.join(absent)} controller")
        fix.append(
            "delegate them: a drop-in with Delegate=memory pids for user@.service "
            "(/etc/systemd/system/user@.service.d/delegate.conf)"
        )
    return [c for c in LIMITED if c in enabled]


def check_limits(host: Host) -> Check:
    limits = limit_backend(host)
    return Check(
        "resource limits",
        OPTIONAL if "rlimits" in limits.backend else OK,
        limits.found,
        limits.fix,
        "only a cgroup counts a whole container's memory; cpu (CPU time) is RLIMIT_CPU per "
        "process on every host",
    )


def run_checks(host: Host, answers: Mapping[str, Trial] | None = None) -> list[Check]:
    """Every check, in the order a container needs them. A trial that needs a user
    namespace with id maps is not run when those are missing: it would fail the same way."""
    trials = Trials(host, answers)
    checks = [check_kernel(host)]
    gate = check_userns(host, trials)
    checks.append(gate)
    if gate.status != MISSING:
        gate = check_id_maps(host, trials)
        checks.append(gate)
    steps: list[tuple[str, Callable[[Host, Trials], Check]]] = [
        ("id maps", check_id_maps),
        ("mounts and pivot_root", check_mounts),
        ("fresh /proc", check_proc),
        ("trial container", check_container),
        ("overlayfs in a user namespace", check_overlay),
    ]
    for name, check in steps:
        if any(c.name == name for c in checks):
            continue
        if gate.status == MISSING and name != "trial container":
            checks.append(Check(name, UNTRIED, f"needs {gate.name} (above)"))
        else:
            checks.append(check(host, trials))
    checks += [check_subordinate_ids(host), check_limits(host)]
    return [_same_cause(check, checks) for check in checks]


def _same_cause(check: Check, checks: list[Check]) -> Check:
    """The trial container fails for a reason a check above already showed: say which,
    rather than repeat its fix."""
    if check.name != "trial container" or check.status != MISSING:
        return check
    for earlier in checks:
        if earlier is not check and earlier.status == MISSING and earlier.found == check.found:
            return Check(check.name, MISSING, f"refused, as {earlier.name} (above) says")
    return check


# --- the report -----------------------------------------------------------------------------

WIDTH = 100
INDENT = " " * 10


def render(checks: list[Check], host: Host) -> list[str]:
    user = host.user_name()
    lines = [
        "pytest-rootless doctor: what this host allows for isolated tests",
        f"({platform.system()} {host.read('/proc/sys/kernel/osrelease') or '?'}, "
        f"{platform.machine()}, uid {host.uid}{'' if user == str(host.uid) else f' ({user})'}, "
        f"Python {platform.python_version()}" + ("" if host.live else "; kernel trials off") + ")",
        "",
    ]
    for check in checks:
        lines += textwrap.wrap(
            f"{check.status:<9} {check.name}: {check.found}",
            WIDTH,
            subsequent_indent=INDENT,
            break_on_hyphens=False,
        )
        if check.status in (MISSING, OPTIONAL):
            extra = ([f"why: {check.why}"] if check.why else []) + [f"fix: {f}" for f in check.fix]
            for text in extra:
                lines += textwrap.wrap(
                    text,
                    WIDTH,
                    initial_indent=INDENT,
                    subsequent_indent=INDENT + "     ",
                    break_on_hyphens=False,
                )
    lines.append("")
    lines += textwrap.wrap(verdict(checks), WIDTH, break_on_hyphens=False)
    return lines


def verdict(checks: list[Check]) -> str:
    missing = [c.name for c in checks if c.status == MISSING]
    if missing:
        return (
            f"isolation cannot work here ({', '.join(missing)}): isolated tests are skipped, "
            "or fail under --rootless-require. Fix the 'missing' lines above."
        )
    if any(c.status == UNTRIED for c in checks):
        return "nothing needed is missing, but not everything was tried on this kernel."
    return "isolation works here: isolated tests run in containers."


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == MISSING for c in checks) else 0


def doctor(host: Host | None = None, out: TextIO | None = None) -> int:
    """Print the report for ``host`` (this machine by default); 1 if isolation cannot work."""
    host = host or Host()
    checks = run_checks(host)
    out = out or sys.stdout
    out.write("\n".join(render(checks, host)) + "\n")
    out.flush()
    return exit_code(checks)
