"""The seccomp program of every test process, assembled once on the host: classic BPF
over struct seccomp_data {int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];}
(include/uapi/linux/seccomp.h, filter.h). Pure data: :mod:`.syscalls` installs it with
prctl(PR_SET_SECCOMP).

What it refuses, as Docker's default profile does for the same reasons:

* ``ioctl(fd, TIOCSTI | TIOCLINUX)``: typing into a terminal the test inherited;
* ``add_key``, ``request_key`` and ``keyctl`` (EPERM): the kernel's keyrings are not
  namespaced; a key is found by its serial number and reached by its owner's uid, so a
  test of your uid could link, read, add to and delete from your user keyring
  (keyrings(7));
* ``unshare`` and ``clone`` with ``CLONE_NEWCGROUP`` (EPERM): a new cgroup namespace is
  what lets a test mount cgroupfs, and as real root write the host's cgroup tree, its
  own limits included (cgroup_namespaces(7));
* ``clone3`` (ENOSYS): its flags are in memory, out of a filter's sight; glibc then
  falls back to ``clone``, whose flags the filter sees.
"""

from __future__ import annotations

import errno
import platform

SECCOMP_RET_ALLOW = 0x7FFF0000


SECCOMP_RET_ERRNO = 0x00050000


_BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS


_BPF_JA = 0x05  # BPF_JMP | BPF_JA


_BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K


_BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K


_BPF_RET_K = 0x06  # BPF_RET | BPF_K


# Offsets in seccomp_data; an argument's low word (little-endian, as both machines are).
_SECCOMP_NR, _SECCOMP_ARCH, _SECCOMP_ARG0_LOW, _SECCOMP_ARG1_LOW = 0, 4, 16, 24


TIOCSTI = 0x5412  # include/uapi/asm-generic/ioctls.h


TIOCLINUX = 0x541C


CLONE_NEWCGROUP = 0x02000000  # include/uapi/linux/sched.h


_X32 = 0x40000000  # __X32_SYSCALL_BIT: x32 processes run on x86_64 with it set in the number

#: Per architecture: AUDIT_ARCH_*, then the numbers of each filtered call in every ABI that
#: reaches the kernel from a process of it (x86_64 also runs i386 code, and x32; aarch64
#: runs arm code), from arch/*/entry/syscalls and arch/arm/tools/syscall.tbl.
_ABIS: dict[str, tuple[tuple[int, dict[str, tuple[int, ...]]], ...]] = {
    "x86_64": (
        (
            0xC000003E,
            {
                "ioctl": (16, _X32 | 514),
                "keys": (248, 249, 250, _X32 | 248, _X32 | 249, _X32 | 250),
                "flags": (272, 56, _X32 | 272, _X32 | 56),  # unshare, clone
                "clone3": (435, _X32 | 435),
            },
        ),
        (
            0x40000003,
            {"ioctl": (54,), "keys": (286, 287, 288), "flags": (310, 120), "clone3": (435,)},
        ),
    ),
    "aarch64": (
        (
            0xC00000B7,
            {"ioctl": (29,), "keys": (217, 218, 219), "flags": (97, 220), "clone3": (435,)},
        ),
        (
            0x40000028,
            {"ioctl": (54,), "keys": (309, 310, 311), "flags": (337, 120), "clone3": (435,)},
        ),
    ),
}


Insn = tuple[str, int] | tuple[str, int, str, str]


def _program(abis: tuple[tuple[int, dict[str, tuple[int, ...]]], ...]) -> list[Insn]:
    """The program with symbolic jumps: ``(label, 0)`` marks a place; in ``jeq``/``jset``
    an empty label is the next instruction."""
    eperm, enosys = SECCOMP_RET_ERRNO | errno.EPERM, SECCOMP_RET_ERRNO | errno.ENOSYS
    program: list[Insn] = []
    for index, (arch, numbers) in enumerate(abis):
        program += [(f"abi{index}", 0), ("ld", _SECCOMP_ARCH)]
        program += [("jeq", arch, "", f"abi{index + 1}"), ("ld", _SECCOMP_NR)]
        for target in ("ioctl", "keys", "flags", "clone3"):
            program += [("jeq", nr, target, "") for nr in numbers[target]]
        program += [("ja", 0, "allow", "")]
    program += [(f"abi{len(abis)}", 0), ("ja", 0, "allow", "")]
    # the kernel compares only the low 32 bits of an ioctl request (a 64-bit comparison
    # misses ``(1 << 32) | TIOCSTI``, CVE-2019-10063 in flatpak), and of clone's flags
    program += [("ioctl", 0), ("ld", _SECCOMP_ARG1_LOW)]
    program += [
        ("jeq", TIOCSTI, "deny", ""),
        ("jeq", TIOCLINUX, "deny", ""),
        ("ja", 0, "allow", ""),
    ]
    program += [("flags", 0), ("ld", _SECCOMP_ARG0_LOW), ("jset", CLONE_NEWCGROUP, "deny", "")]
    program += [("ja", 0, "allow", "")]
    program += [("clone3", 0), ("ret", enosys)]
    program += [("keys", 0), ("deny", 0), ("ret", eperm), ("allow", 0), ("ret", SECCOMP_RET_ALLOW)]
    return program


def assemble(program: list[Insn]) -> list[tuple[int, int, int, int]]:
    """Classic BPF from :func:`_program`'s form: jumps are relative to the next
    instruction."""
    labels, count = {}, 0
    for op in program:
        if op[0] in ("ld", "jeq", "jset", "ja", "ret"):
            count += 1
        else:
            labels[op[0]] = count
    code: list[tuple[int, int, int, int]] = []
    for op in program:
        pc = len(code)
        if op[0] == "ld":
            code.append((_BPF_LD_W_ABS, 0, 0, op[1]))
        elif op[0] == "ret":
            code.append((_BPF_RET_K, 0, 0, op[1]))
        elif op[0] == "ja":
            code.append((_BPF_JA, 0, 0, labels[op[2]] - pc - 1))  # type: ignore[misc]
        elif op[0] in ("jeq", "jset"):
            name, k, true, false = op  # type: ignore[misc]
            jt = labels[true] - pc - 1 if true else 0
            jf = labels[false] - pc - 1 if false else 0
            code.append((_BPF_JEQ_K if name == "jeq" else _BPF_JSET_K, jt, jf, k))
    return code


def build_filter() -> list[tuple[int, int, int, int]]:
    """The assembled program for this machine's ABIs; everything it does not name is
    allowed (as is every call of an ABI the machine does not run)."""
    return assemble(_program(_ABIS.get(platform.machine(), ())))


#: Assembled once, on the host at import: every container process inherits it.
TEST_PROCESS_FILTER = build_filter()

#: What the filter refuses, for the trace.
DESCRIPTION = (
    "ioctl TIOCSTI|TIOCLINUX, add_key, request_key, keyctl, unshare|clone CLONE_NEWCGROUP "
    "-> EPERM; clone3 -> ENOSYS"
)
