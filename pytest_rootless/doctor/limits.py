"""How the ``memory`` and ``pids`` options would be enforced here, as the runtime
chooses (:func:`..runtime.limits.detect`), and, by the files, why a controller falls back
to rlimits and the fix."""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime import limits as limits_mod
from .host import Host


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
