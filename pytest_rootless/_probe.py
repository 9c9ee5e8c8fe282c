"""What this host allows, and the one place that turns "cannot isolate" into a reason.

The answer comes from a real trial: a short-lived container built by the same code as
every other one. Sysctls are read first only to *explain* a refusal and name the fix.
"""

from __future__ import annotations

import errno
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass

from . import _syscalls as sc


class UnsupportedHost(RuntimeError):
    """Raised when this host cannot create the containers isolation needs.

    The message names the cause and the fix. Isolated tests are skipped with it, or
    fail with it under ``--rootless-require``.
    """


@dataclass(frozen=True)
class Support:
    ok: bool
    reason: str = ""


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def sysctl_problems(proc: str = "/proc") -> list[str]:
    """Sysctls known to forbid unprivileged user namespaces, each with its fix."""
    problems = []
    if _read(f"{proc}/sys/user/max_user_namespaces") == "0":
        problems.append(
            "user namespaces are disabled (user.max_user_namespaces = 0); "
            "fix: sysctl -w user.max_user_namespaces=15000"
        )
    if _read(f"{proc}/sys/kernel/unprivileged_userns_clone") == "0":
        problems.append(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); "
            "fix: sysctl -w kernel.unprivileged_userns_clone=1"
        )
    if _read(f"{proc}/sys/kernel/apparmor_restrict_unprivileged_userns") == "1" and os.getuid():
        problems.append(
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns = 1); fix: sysctl -w "
            "kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for "
            "this Python allowing 'userns'"
        )
    return problems


def static_problem() -> str | None:
    """A reason isolation cannot work here that needs no trial."""
    if not sys.platform.startswith("linux"):
        return (
            f"isolation needs Linux namespaces and this is {platform.system() or sys.platform}; "
            "fix: run the tests on Linux (or in a Linux VM)"
        )
    if platform.machine() not in sc._SYSCALLS:
        return f"no syscall table for the {platform.machine()} architecture yet"
    return None


_CAP_SETFCAP = 31  # include/uapi/linux/capability.h


def _has_capability(cap: int) -> bool:
    status = _read("/proc/self/status") or ""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def explain_trial_failure(call: str | None, err: int | None, message: str) -> str:
    """Turn the first failing step of a trial container into cause + fix."""
    hints = sysctl_problems()
    if hints:
        return hints[0]
    call = call or ""
    if call.startswith("clone") and err in (errno.EPERM, errno.EACCES):
        return (
            "creating a user namespace was refused (EPERM): a seccomp profile or security "
            "module blocks clone(CLONE_NEWUSER) (the Docker default does); fix: run outside "
            "that sandbox or with a profile that allows user namespaces"
        )
    if call.startswith("clone") and err == errno.ENOSPC:
        return (
            "the user-namespace limit is reached (ENOSPC); fix: raise "
            "user.max_user_namespaces, or check for leaked namespaces"
        )
    if "uid_map" in call and os.geteuid() == 0 and not _has_capability(_CAP_SETFCAP):
        return (
            "this process is uid 0 without CAP_SETFCAP (inside another container?), and the "
            "kernel refuses to map uid 0 into a new user namespace then (Linux 5.12+); fix: "
            "run as a non-root user, or give the outer container CAP_SETFCAP (root=True)"
        )
    if "uid_map" in call or "gid_map" in call or "setgroups" in call:
        return (
            f"writing the user namespace's id map was refused ({message}); an LSM likely "
            "strips capabilities from new user namespaces; fix: allow unprivileged user "
            "namespaces for this program"
        )
    if call.startswith("mount('proc'"):
        return (
            "mounting a fresh /proc was refused: the host's /proc has over-mounts (Docker "
            "and similar mask parts of it, and so does an isolated test's own /proc), so the "
            "kernel will not show a new one; fix: run with an unmasked /proc (docker "
            "--security-opt systempaths=unconfined), not from inside an isolated test"
        )
    if call.startswith("mount_setattr") and err == errno.ENOSYS:
        return "mount_setattr(2) is missing: Linux 5.12 or newer is required"
    return f"a trial container failed: {message}"


def trial(run_container: Callable[[], tuple[bool, str | None, int | None, str]]) -> Support:
    """Run one real container; ``run_container`` returns (ok, failing call, errno, message)."""
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
