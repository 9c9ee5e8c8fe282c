"""The doctor on this host's real kernel: ``python -m pytest_rootless doctor`` and
``pytest --rootless-doctor``, on a host that can isolate and on hosts that cannot.

The hosts that cannot are real, not mocked: a user namespace whose
``user.max_user_namespaces`` is 0 (the limit is per user namespace, see
test_unsupported_host.py), and a seccomp filter that refuses user namespaces with EPERM
the way Docker's default profile does.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import sys

import pytest

STATUSES = ("ok", "missing", "optional", "untried")

TESTS = """
import pathlib

def test_must_not_run():
    pathlib.Path("ran.txt").write_text("ran")
"""

#: Runs a command under a seccomp filter that answers unshare(2), and clone(2) with
#: CLONE_NEWUSER, with EPERM (Docker's default profile does the same), then execs it.
NO_USERNS_FILTER = r"""
import ctypes, errno, os, platform, struct, sys

UNSHARE, CLONE = {"x86_64": (272, 56), "aarch64": (97, 220)}[platform.machine()]
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[platform.machine()]
CLONE_NEWUSER = 0x10000000
LD_W_ABS, JEQ_K, JSET_K, RET_K = 0x20, 0x15, 0x45, 0x06  # linux/filter.h, BPF_* opcodes
ALLOW, ERRNO = 0x7FFF0000, 0x00050000                     # SECCOMP_RET_*

def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)

program = [
    insn(LD_W_ABS, 0, 0, 4),            # seccomp_data.arch
    insn(JEQ_K, 1, 0, AUDIT_ARCH),
    insn(RET_K, 0, 0, ALLOW),
    insn(LD_W_ABS, 0, 0, 0),            # seccomp_data.nr
    insn(JEQ_K, 3, 0, UNSHARE),         # unshare: refuse
    insn(JEQ_K, 0, 3, CLONE),           # clone: look at its flags; anything else: allow
    insn(LD_W_ABS, 0, 0, 16),           # args[0], low half (little-endian)
    insn(JSET_K, 0, 1, CLONE_NEWUSER),
    insn(RET_K, 0, 0, ERRNO | errno.EPERM),
    insn(RET_K, 0, 0, ALLOW),
]
code = ctypes.create_string_buffer(b"".join(program))

class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

prog = SockFprog(len(program), ctypes.addressof(code))
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS, SECCOMP_MODE_FILTER = 22, 38, 2
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0
):
    sys.exit("seccomp: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
"""


def doctor_cli(pytester: pytest.Pytester, *wrapper: str) -> pytest.RunResult:
    return pytester.run(*wrapper, sys.executable, "-m", "pytest_rootless", "doctor")


def pytest_doctor(pytester: pytest.Pytester, *wrapper: str) -> pytest.RunResult:
    argv = (sys.executable, "-m", "pytest", "-p", "rootless", "--rootless-doctor")
    return pytester.run(*wrapper, *argv)


def status_lines(result: pytest.RunResult) -> list[str]:
    """The ``status  name`` part of each check's line."""
    return [
        line.split(":")[0]
        for line in result.stdout.lines
        if line.split(" ")[0] in STATUSES and not line.startswith(" ")
    ]


def without_userns(pytester: pytest.Pytester) -> tuple[str, ...]:
    """A wrapper that runs a command where ``user.max_user_namespaces`` is 0."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) from util-linux")
    script = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'
    return ("unshare", "--user", "--map-root-user", "sh", "-c", script, "sh")


def under_seccomp(pytester: pytest.Pytester) -> tuple[str, ...]:
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"no syscall numbers for {platform.machine()} in the filter")
    filter_script = pytester.path / "no_userns_filter.py"
    filter_script.write_text(NO_USERNS_FILTER)
    return (sys.executable, str(filter_script))


# --- a host that can isolate -------------------------------------------------------------------


def test_doctor_says_this_host_can_isolate(pytester: pytest.Pytester) -> None:
    result = doctor_cli(pytester)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "pytest-rootless doctor: what this host allows for isolated tests",
            "ok        kernel: Linux *",
            "ok        user namespaces: unshare(CLONE_NEWUSER) worked in a forked child*",
            f"ok        id maps: one-line maps of your own ids: uid {os.getuid()} -> *",
            "ok        mounts and pivot_root: in a new mount namespace: *",
            "ok        fresh /proc: a new proc mounted in a new PID namespace*",
            "ok        trial container: a real container started and ended*",
            "isolation works here: isolated tests run in containers.",
        ]
    )
    checks = status_lines(result)
    assert [c.split(maxsplit=1)[1] for c in checks] == [
        "kernel",
        "user namespaces",
        "id maps",
        "mounts and pivot_root",
        "fresh /proc",
        "trial container",
        "overlayfs in a user namespace",
        "subordinate ids",
        "resource limits",
    ]
    assert not any(c.startswith("missing") for c in checks)


def test_pytest_rootless_doctor_prints_the_same_and_runs_no_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TESTS)
    result = pytest_doctor(pytester)
    assert result.ret == pytest.ExitCode.OK
    assert status_lines(result) == status_lines(doctor_cli(pytester))
    assert "collected" not in result.stdout.str()
    assert not (pytester.path / "ran.txt").exists()


def test_the_option_is_documented_in_pytest_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "rootless", "--help")
    result.stdout.fnmatch_lines(["*--rootless-doctor*print what this host allows*"])


def test_doctor_inside_an_isolated_test(pytester: pytest.Pytester) -> None:
    """Inside a container the doctor reports the container: a rootless user's container
    can make containers again; real root's cannot map uid 0 without CAP_SETFCAP."""
    pytester.makepyfile(
        f"""
        import subprocess, sys, pytest

        @pytest.mark.isolated
        def test_doctor():
            done = subprocess.run(
                [sys.executable, "-m", "pytest_rootless", "doctor"],
                capture_output=True, text=True,
            )
            print(done.stdout)
            if {os.getuid()} != 0:
                assert done.returncode == 0
                assert "ok        fresh /proc: a new proc mounted" in done.stdout
            else:
                assert done.returncode == 1
                assert "missing   id maps: this process is uid 0 without CAP_SETFCAP" in (
                    done.stdout
                )
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=1)


# --- hosts that cannot -------------------------------------------------------------------------


def test_doctor_names_disabled_user_namespaces_and_the_fix(pytester: pytest.Pytester) -> None:
    result = doctor_cli(pytester, *without_userns(pytester))
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "missing   user namespaces: user namespaces are disabled "
            "(user.max_user_namespaces = 0)",
            "          why: every container starts with a user namespace*",
            "          fix: sysctl -w user.max_user_namespaces=15000",
            "untried   id maps: needs user namespaces (above)",
            "missing   trial container: refused, as user namespaces (above) says",
            "isolation cannot work here (user namespaces, trial container)*",
        ]
    )


def test_pytest_rootless_doctor_exits_1_where_isolation_cannot_work(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(TESTS)
    result = pytest_doctor(pytester, *without_userns(pytester))
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*fix: sysctl -w user.max_user_namespaces=15000"])
    assert not (pytester.path / "ran.txt").exists()


def test_doctor_names_a_seccomp_filter_that_blocks_user_namespaces(
    pytester: pytest.Pytester,
) -> None:
    result = doctor_cli(pytester, *under_seccomp(pytester))
    assert result.ret == 1, result.stdout.str() + result.stderr.str()
    text = " ".join(line.strip() for line in result.stdout.lines)
    assert (
        "missing user namespaces: creating a user namespace was refused (EPERM): a seccomp "
        "filter on this process (Seccomp: 2 in /proc/self/status"
    ) in " ".join(text.split())
    assert "seccomp=unconfined" in text
    result.stdout.fnmatch_lines(["missing   trial container: refused, as user namespaces*"])


def test_isolated_tests_skip_with_the_seccomp_reason(pytester: pytest.Pytester) -> None:
    """The skip reason of an isolated test comes from the same explanation."""
    pytester.makepyfile("import pytest\n@pytest.mark.isolated\ndef test_x(): pass\n")
    wrapper = under_seccomp(pytester)
    result = pytester.run(*wrapper, sys.executable, "-m", "pytest", "-p", "rootless", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*SKIPPED*rootless: creating a user namespace was refused (EPERM): a seccomp filter*"]
    )


def test_the_wrappers_really_take_user_namespaces_away(pytester: pytest.Pytester) -> None:
    """Keeps the two tests above honest: under each wrapper, unshare(1) itself fails."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) from util-linux")
    for wrapper in (without_userns(pytester), under_seccomp(pytester)):
        result = pytester.run(*wrapper, "unshare", "--user", "true")
        assert result.ret != 0, shlex.join(wrapper)
