"""A recording fake of the kernel boundary for the mount plan.

It records every mount-related call in order and performs the file-system side effects
(mkdir, files, symlinks) in a real temporary directory, so a plan can be applied without
privileges. ``tests/integration/test_rootfs_contract.py`` runs the same plan on the real
kernel and checks the real trace matches this fake's recording, keeping it honest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pytest_rootless.kernel import libc, mount


@dataclass
class FakeKernel:
    calls: list[tuple[str, ...]] = field(default_factory=list)
    sources: dict[int, str] = field(default_factory=dict)

    MOUNT_ATTR_RDONLY = mount.MOUNT_ATTR_RDONLY
    MNT_DETACH = mount.MNT_DETACH

    def mount(
        self,
        source: str | None,
        target: str,
        fstype: str | None,
        flags: int,
        data: str | None = None,
        *,
        label: str | None = None,
    ) -> None:
        shown = label or source
        self.calls.append(("mount", str(shown), target, str(fstype), str(int(flags))))

    def mount_setattr(self, path: str, attr_set: int, *, recursive: bool = True) -> None:
        self.calls.append(("mount_setattr", path, str(attr_set), str(recursive)))

    def open_path(self, path: str) -> int:
        # a real fd (the plan closes it), but not of the source: nothing is mounted
        fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
        self.sources[fd] = path
        self.calls.append(("open_path", path))
        return fd

    SyscallError = libc.SyscallError

    def open_dir_nofollow(self, path: str) -> int:
        return mount.open_dir_nofollow(path)  # a lookup only: real, as it changes nothing

    def fd_path(self, fd: int) -> str:
        return f"/proc/self/fd/{fd}"

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self.calls.append(("pivot_root", new_root, put_old))

    def umount2(self, target: str, flags: int) -> None:
        self.calls.append(("umount2", target, str(flags)))

    def trace_note(self, line: str) -> None:
        pass

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]
