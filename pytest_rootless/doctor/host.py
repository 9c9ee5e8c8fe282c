"""Where the doctor reads a host's facts: this machine's files, or a simulated host's."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field

from ..kernel import procfs
from ..kernel.paths import in_root


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


def kernel_version(host: Host) -> tuple[int, int] | None:
    release = host.read("/proc/sys/kernel/osrelease") or ""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "0")
    except (IndexError, ValueError):
        return None
