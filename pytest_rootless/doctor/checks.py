"""The checks, one ``check_*`` per line of the report, in the order a container needs
them (:func:`run_checks`)."""

from __future__ import annotations

import os
import platform
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..kernel import procfs
from ..kernel.paths import is_under
from ..kernel.procfs import Mount
from ..runtime import probe
from . import apparmor
from .host import Host, kernel_version
from .limits import limit_backend
from .trials import Trial, Trials

OK, MISSING, OPTIONAL, UNTRIED = "ok", "missing", "optional", "untried"

#: Directories of procfs (relative to its root) that the kernel declares permanently empty
#: (``register_sysctl_mount_point``, ``proc_create_mount_point``): a mount on one of them
#: hides nothing, so it does not stop a fresh proc mount (fs/namespace.c,
#: ``mnt_already_visible``). systemd mounts binfmt_misc on most hosts.
EMPTY_PROC_DIRS = frozenset({"/sys/fs/binfmt_misc", "/fs/nfsd"})


@dataclass(frozen=True)
class Check:
    """One line of the report: what was found, and for a problem why it matters and the fix."""

    name: str
    status: str
    found: str
    fix: tuple[str, ...] = ()
    why: str = ""
    #: Lines printed as they are under the fix (a file to install, commands to run).
    details: tuple[str, ...] = ()


def _cause_and_fix(reason: str) -> tuple[str, tuple[str, ...]]:
    cause, sep, fix = reason.partition("; fix: ")
    return cause, (fix,) if sep else ()


def _refusal(host: Host, trial: Trial) -> tuple[str, tuple[str, ...]]:
    problem = probe.explain(trial.call, trial.errno, trial.message, host.root, host.uid)
    if problem.fix:
        return problem.cause, (problem.fix,)
    return trial.message, (
        "this kernel or a security module refuses it; `pytest --rootless-trace` shows "
        "each step of a container",
    )


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
        restricted = any(p.cause.startswith(probe.APPARMOR_CAUSE) for p in problems)
        return Check(
            name,
            MISSING,
            "; ".join(p.cause for p in problems),
            tuple(p.fix for p in problems),
            WHY_USERNS,
            tuple(apparmor.install_lines()) if restricted else (),
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
