"""The seccomp program of every test process, assembled once on the host: classic BPF
over struct seccomp_data {int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];}
(include/uapi/linux/seccomp.h, filter.h). Pure data: :mod:`.syscalls` installs it with
prctl(PR_SET_SECCOMP)."""

from __future__ import annotations

import errno
import platform

SECCOMP_RET_ALLOW = 0x7FFF0000


SECCOMP_RET_ERRNO = 0x00050000


_BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS


_BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K


_BPF_RET_K = 0x06  # BPF_RET | BPF_K


_SECCOMP_NR, _SECCOMP_ARCH, _SECCOMP_ARG1_LOW = 0, 4, 24  # offsets; args[1] low word (LE)


TIOCSTI = 0x5412  # include/uapi/asm-generic/ioctls.h


TIOCLINUX = 0x541C


#: Per architecture: AUDIT_ARCH_*, then each ioctl(2) number that reaches the kernel from a
#: process of it (x86_64 also runs i386 code, and x32 with bit 30 set in the number).
_IOCTL_ABIS = {
    "x86_64": ((0xC000003E, (16, 0x40000000 | 514)), (0x40000003, (54,))),
    "aarch64": ((0xC00000B7, (29,)), (0x40000028, (54,))),
}


def terminal_filter() -> list[tuple[int, int, int, int]]:
    """The program: for ioctl(2) in every ABI of this machine, EPERM when the request's low
    32 bits are TIOCSTI or TIOCLINUX (the kernel compares only those: a 64-bit comparison
    misses ``(1 << 32) | TIOCSTI``, CVE-2019-10063 in flatpak); everything else allowed."""
    allow, deny = ("ret", SECCOMP_RET_ALLOW), ("ret", SECCOMP_RET_ERRNO | errno.EPERM)
    program: list[tuple[str, int] | tuple[str, int, str, str]] = []
    for index, (arch, numbers) in enumerate(_IOCTL_ABIS.get(platform.machine(), ())):
        other = f"abi{index + 1}"
        program += [(f"abi{index}", 0), ("ld", _SECCOMP_ARCH), ("jeq", arch, "", other)]
        program += [("ld", _SECCOMP_NR)]
        program += [("jeq", nr, "request", "") for nr in numbers]
        program += [("ja-allow", 0)]
    program += [(f"abi{len(_IOCTL_ABIS.get(platform.machine(), ()))}", 0), ("ja-allow", 0)]
    program += [("request", 0), ("ld", _SECCOMP_ARG1_LOW)]
    program += [("jeq", TIOCSTI, "deny", ""), ("jeq", TIOCLINUX, "deny", ""), allow]
    program += [("deny", 0), deny, ("allow", 0), allow]
    # assemble: labels are (name, 0) entries; "" in a jump is the next instruction
    labels, count = {}, 0
    for op in program:
        if op[0] in ("ld", "jeq", "ret", "ja-allow"):
            count += 1
        else:
            labels[op[0]] = count
    code, pc = [], 0
    for op in program:
        if op[0] == "ld":
            code.append((_BPF_LD_W_ABS, 0, 0, op[1]))
        elif op[0] == "ret":
            code.append((_BPF_RET_K, 0, 0, op[1]))
        elif op[0] == "ja-allow":  # BPF_JA is relative too; jeq 0 == 0 always taken
            code.append((_BPF_JEQ_K, labels["allow"] - pc - 1, labels["allow"] - pc - 1, 0))
        elif op[0] == "jeq":
            _, k, true, false = op  # type: ignore[misc]
            jt = labels[true] - pc - 1 if true else 0
            jf = labels[false] - pc - 1 if false else 0
            code.append((_BPF_JEQ_K, jt, jf, k))
        else:
            continue
        pc += 1
    return code


#: Assembled once, on the host at import: every container process inherits it.
TERMINAL_FILTER = terminal_filter()
