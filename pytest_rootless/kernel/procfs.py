"""The one reader of mountinfo, cgroup and status files (proc_pid_mountinfo(5),
proc_pid_cgroup(5), proc_pid_status(5)), and of the small files of procfs, sysfs and
cgroupfs (:func:`read`).

Every reader takes the ``root`` the files are under (``/`` for this host, a directory
for a simulated one) and the process (``self`` by default); a file that cannot be read
reads as empty. The parsers take the text, so they can be tried on any.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .paths import in_root, is_under


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo."""

    root: str  # the path inside the filesystem that is mounted here (a bind's source)
    point: str
    options: tuple[str, ...]  # per-mount options: rw/ro, nosuid, ...
    fstype: str
    super_options: tuple[str, ...]  # per-superblock options: cgroup v1's controllers

    def shows(self, path: str) -> str | None:
        """Where ``path``, a path inside the mounted filesystem, appears through this
        mount; None when the mount shows only another part of the filesystem."""
        if not is_under(path, self.root):
            return None
        inside = path[len(self.root.rstrip("/")) :]
        return (self.point.rstrip("/") + inside).rstrip("/") or "/"


def read(path: str, root: str = "/") -> str | None:
    """A small kernel or config file under ``root``, stripped; None when it cannot be read."""
    try:
        with open(in_root(root, path)) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (octal)
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of mountinfo ``text``, in its order (a later mount on the same point is
    on top); malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        mounts.append(
            Mount(
                root=_unescape(fields[3]),
                point=_unescape(fields[4]),
                options=tuple(fields[5].split(",")),
                fstype=tail[0],
                super_options=tuple(tail[2].split(",")),
            )
        )
    return mounts


def mountinfo(root: str = "/", pid: str = "self") -> list[Mount]:
    """The mounts ``/proc/PID/mountinfo`` lists."""
    return parse_mountinfo(read(f"/proc/{pid}/mountinfo", root) or "")


def parse_cgroups(text: str) -> dict[str, str]:
    """Controller (``""`` for the cgroup v2 hierarchy) -> the process's cgroup in it, from
    cgroup file ``text``; the first line naming a controller counts."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        for controller in controllers.split(",") if controllers else [""]:
            paths.setdefault(controller, path)
    return paths


def cgroups(root: str = "/", pid: str = "self") -> dict[str, str]:
    """The cgroups ``/proc/PID/cgroup`` lists, per controller."""
    return parse_cgroups(read(f"/proc/{pid}/cgroup", root) or "")


def parse_status_field(text: str, name: str) -> str | None:
    """The value of field ``name`` in status file ``text``, stripped."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key == name:
            return value.strip()
    return None


def status_field(name: str, root: str = "/", pid: str = "self") -> str | None:
    """One field of ``/proc/PID/status``, e.g. ``Seccomp``, ``CapEff`` or ``VmData``."""
    return parse_status_field(read(f"/proc/{pid}/status", root) or "", name)


def parent_of(pid: str, root: str = "/") -> int | None:
    """The parent pid of ``pid`` (field 4 of proc_pid_stat(5)); None when it is gone."""
    try:
        with open(in_root(root, f"/proc/{pid}/stat"), "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]) if len(fields) > 1 else None


def descendants(pid: int, root: str = "/") -> list[int]:
    """Every living process whose chain of parents leads to ``pid``, read from ``/proc``
    (a process that forks meanwhile may be missed: callers repeat until none is left)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir(in_root(root, "/proc")):
        if name.isdigit():
            parent = parent_of(name, root)
            if parent is not None:
                children.setdefault(parent, []).append(int(name))
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, ()))
    return found
