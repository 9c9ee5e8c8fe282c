"""What this host allows, and the one place that turns "cannot isolate" into a reason.

The answer comes from a real trial: a short-lived container built by the same code as
every other one. Sysctls and ``/proc/self/status`` are read first only to *explain* a
refusal and name the fix. The doctor (:mod:`pytest_rootless.doctor`) shows the same
explanations, one
capability at a time; every reader here takes the root of the files it reads (``/`` for
this host), so a test can point it at a simulated host.
"""

from __future__ import annotations

import errno
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass

from ..kernel import libc, procfs
from ..kernel.paths import in_root
from ..kernel.procfs import read


class UnsupportedHost(RuntimeError):
    """Raised when this host cannot create the containers isolation needs.

    The message names the cause and the fix. Isolated tests are skipped with it, or
    fail with it under ``--rootless-require``.
    """


@dataclass(frozen=True)
class Support:
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class Problem:
    """Why something cannot work here, and what to do about it (``fix`` may be empty)."""

    cause: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.cause}; fix: {self.fix}" if self.fix else self.cause


#: The start of the cause AppArmor's restriction is reported with.
APPARMOR_CAUSE = "AppArmor restricts unprivileged user namespaces"


def userns_sysctls(root: str = "/", uid: int | None = None) -> list[Problem]:
    """Sysctls known to forbid user namespaces to ``uid`` (default: ours), each with its fix."""
    uid = os.getuid() if uid is None else uid
    problems = []
    # user.max_user_namespaces is per user namespace (user_namespaces(7)): 0 here forbids
    # them to everyone, root included.
    if read("/proc/sys/user/max_user_namespaces", root) == "0":
        problems.append(
            Problem(
                "user namespaces are disabled (user.max_user_namespaces = 0)",
                "sysctl -w user.max_user_namespaces=15000",
            )
        )
    # Debian's and Ubuntu's own patch (before Debian 11): 0 forbids them to non-root users.
    if read("/proc/sys/kernel/unprivileged_userns_clone", root) == "0":
        problems.append(
            Problem(
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
                "sysctl -w kernel.unprivileged_userns_clone=1",
            )
        )
    # Ubuntu 23.10+: AppArmor lets only programs whose profile says `userns` create them.
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", root) == "1" and uid:
        problems.append(
            Problem(
                f"{APPARMOR_CAUSE} (kernel.apparmor_restrict_unprivileged_userns = 1)",
                "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor "
                "profile for this Python allowing 'userns' (python -m pytest_rootless doctor "
                "prints one to install)",
            )
        )
    return problems


def static_problem() -> str | None:
    """A reason isolation cannot work here that needs no trial."""
    if not sys.platform.startswith("linux"):
        return (
            f"isolation needs Linux namespaces and this is {platform.system() or sys.platform}; "
            "fix: run the tests on Linux (or in a Linux VM)"
        )
    if platform.machine() not in libc._SYSCALLS:
        return f"no syscall table for the {platform.machine()} architecture yet"
    return None


CAP_SETFCAP = 31  # include/uapi/linux/capability.h


def has_capability(cap: int, root: str = "/") -> bool:
    """Whether ``cap`` is in this process's effective set (``CapEff``, capabilities(7))."""
    value = procfs.status_field("CapEff", root)
    return value is not None and bool(int(value, 16) >> cap & 1)


def seccomp_filtered(root: str = "/") -> bool:
    """True when a seccomp filter is on this process (``Seccomp: 2``, seccomp(2)): the
    filter is inherited by every child, so it decides for the containers too."""
    return procfs.status_field("Seccomp", root) == "2"


def container_runtime(root: str = "/") -> str | None:
    """The container engine this process seems to run under, by the marks engines leave."""
    if os.path.exists(in_root(root, "/.dockerenv")):
        return "Docker"
    if os.path.exists(in_root(root, "/run/.containerenv")):
        return "Podman"
    cgroups = " ".join(procfs.cgroups(root, pid="1").values())
    for mark, name in (("kubepods", "Kubernetes"), ("docker", "Docker"), ("lxc", "LXC")):
        if mark in cgroups:
            return name
    return None


def root_without_setfcap(root: str = "/", uid: int | None = None) -> Problem | None:
    """Real root may map uid 0 into a new user namespace only with CAP_SETFCAP in the
    parent namespace (Linux 5.12, commit db2e718a4798: a file capability of such a map
    would hold on the host)."""
    uid = os.geteuid() if uid is None else uid
    if uid != 0 or procfs.status_field("CapEff", root) is None or has_capability(CAP_SETFCAP, root):
        return None  # not root, or cannot tell, or allowed
    return Problem(
        "this process is uid 0 without CAP_SETFCAP (inside another container?), and the "
        "kernel refuses to map uid 0 into a new user namespace then (Linux 5.12+)",
        "run pytest as a non-root user (a container that pytest-rootless made for real "
        "root cannot hold another: see the README's limits); inside another kind of "
        "container, give it CAP_SETFCAP",
    )


def explain(
    call: str | None, err: int | None, message: str, root: str = "/", uid: int | None = None
) -> Problem:
    """Turn the first failing step of a trial (container or doctor) into cause + fix."""
    hints = userns_sysctls(root, uid)
    if hints:
        return hints[0]
    call = call or ""
    creating_userns = call.startswith(("clone", "unshare")) and "NEWUSER" in call
    if creating_userns and err in (errno.EPERM, errno.EACCES):
        engine = container_runtime(root)
        if seccomp_filtered(root):
            where = f"; this looks like {engine}" if engine else ""
            return Problem(
                "creating a user namespace was refused (EPERM): a seccomp filter on this "
                f"process (Seccomp: 2 in /proc/self/status{where}) blocks clone/unshare "
                "with CLONE_NEWUSER (the Docker default profile does)",
                "run outside that sandbox or with a profile that allows user namespaces "
                "(docker run --security-opt seccomp=unconfined)",
            )
        where = f" (this looks like {engine})" if engine else ""
        return Problem(
            "creating a user namespace was refused (EPERM): a seccomp profile or security "
            f"module blocks clone(CLONE_NEWUSER){where}, or this process is in a chroot",
            "run outside that sandbox or with a profile that allows user namespaces",
        )
    if creating_userns and err == errno.ENOSPC:
        return Problem(
            "the user-namespace limit is reached (ENOSPC)",
            "raise user.max_user_namespaces, or check for leaked namespaces",
        )
    mapping = "uid_map" in call or "gid_map" in call or "setgroups" in call
    if "uid_map" in call:
        problem = root_without_setfcap(root, uid)
        if problem:
            return problem
    if mapping:
        return Problem(
            f"writing the user namespace's id map was refused ({message}); an LSM likely "
            "strips capabilities from new user namespaces",
            "allow unprivileged user namespaces for this program",
        )
    if call.startswith("mount('proc'"):
        return Problem(
            "mounting a fresh /proc was refused: the host's /proc has over-mounts (Docker "
            "and similar mask parts of it, and so does an isolated test's own /proc), so the "
            "kernel will not show a new one",
            "run with an unmasked /proc (docker --security-opt systempaths=unconfined), not "
            "from inside an isolated test",
        )
    if call.startswith("mount_setattr") and err == errno.ENOSYS:
        return Problem("mount_setattr(2) is missing: Linux 5.12 or newer is required")
    return Problem(f"a trial container failed: {message}")


def explain_trial_failure(call: str | None, err: int | None, message: str) -> str:
    """Turn the first failing step of a trial container into cause + fix."""
    return str(explain(call, err, message))


def support_from_trial(
    run_container: Callable[[], tuple[bool, str | None, int | None, str]],
) -> Support:
    """Whether containers work here, from one real trial container: ``run_container``
    returns (ok, failing call, errno, message)."""
    problem = static_problem()
    if problem:
        return Support(False, problem)
    try:
        ok, call, err, message = run_container()
    except OSError as exc:
        ok, call, err, message = False, getattr(exc, "call", None), exc.errno, str(exc)
    if ok:
        return Support(True)
    return Support(False, explain_trial_failure(call, err, message))
