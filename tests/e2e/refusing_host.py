"""Run a command on a simulated host that refuses user namespaces as Docker's default
seccomp profile does: ``unshare`` and ``clone`` with a namespace flag fail with EPERM,
``clone3`` with ENOSYS (so that glibc falls back to ``clone``, whose flags a filter can
see). The filter is installed in this process, after PR_SET_NO_NEW_PRIVS, and inherited
by what it execs::

    python refusing_host.py python -m pytest ...
"""

from __future__ import annotations

import errno
import os
import platform
import sys

from pytest_rootless.kernel import syscalls as sc

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
_LD_W_ABS, _JEQ_K, _JSET_K, _RET_K = 0x20, 0x15, 0x45, 0x06
_NR, _ARCH, _ARG0_LOW = 0, 4, 16  # offsets in struct seccomp_data (little endian)
#: Docker's mask of clone(2) flags refused without CAP_SYS_ADMIN: every CLONE_NEW*.
CLONE_NAMESPACES = 0x7E020000
#: AUDIT_ARCH_*, unshare, clone, clone3 (arch/*/entry/syscalls).
_ABI = {
    "x86_64": (0xC000003E, 272, 56, 435),
    "aarch64": (0xC00000B7, 97, 220, 435),
}


def docker_like_filter() -> list[tuple[int, int, int, int]]:
    arch, unshare, clone, clone3 = _ABI[platform.machine()]
    return [
        (_LD_W_ABS, 0, 0, _ARCH),  # 0
        (_JEQ_K, 0, 6, arch),  # 1: another ABI: allow
        (_LD_W_ABS, 0, 0, _NR),  # 2
        (_JEQ_K, 5, 0, unshare),  # 3: -> EPERM
        (_JEQ_K, 5, 0, clone3),  # 4: -> ENOSYS
        (_JEQ_K, 0, 2, clone),  # 5: not clone: allow
        (_LD_W_ABS, 0, 0, _ARG0_LOW),  # 6: clone's flags
        (_JSET_K, 1, 0, CLONE_NAMESPACES),  # 7: a namespace: EPERM
        (_RET_K, 0, 0, SECCOMP_RET_ALLOW),  # 8
        (_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),  # 9
        (_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),  # 10
    ]


def main(argv: list[str]) -> None:
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    sc.seccomp_set_mode_filter(
        docker_like_filter(), "unshare, clone(CLONE_NEW*) -> EPERM; clone3 -> ENOSYS"
    )
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
