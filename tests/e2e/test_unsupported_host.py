"""A host that refuses user namespaces: isolated tests skip with the cause and the fix.

The refusal is real, not mocked: the inner pytest runs inside a user namespace of its own
whose ``user.max_user_namespaces`` is 0 (the limit is per user namespace), so the kernel
answers clone(CLONE_NEWUSER) with ENOSPC, exactly as on a host with the sysctl at 0.
"""

from __future__ import annotations

import shlex
import shutil
import sys

import pytest

TESTS = """
import pytest

@pytest.mark.isolated
def test_one():
    pass

@pytest.mark.isolated
def test_two():
    pass

def test_plain():
    pass
"""


def run_without_userns(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) from util-linux")
    inner = " ".join(
        shlex.quote(a) for a in (sys.executable, "-m", "pytest", "-p", "rootless", *args)
    )
    script = (
        f"cd {shlex.quote(str(pytester.path))} && "
        f"echo 0 > /proc/sys/user/max_user_namespaces && exec {inner}"
    )
    return pytester.run("unshare", "--user", "--map-root-user", "sh", "-c", script)


def test_isolated_tests_are_skipped_with_cause_and_fix(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TESTS)
    result = run_without_userns(pytester, "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*= rootless =*",
            "2 isolated test(s) skipped: user namespaces are disabled*",
            "*SKIPPED*rootless: user namespaces are disabled (user.max_user_namespaces = 0);"
            " fix: sysctl -w user.max_user_namespaces=*",
        ]
    )


@pytest.mark.parametrize("how", [["--rootless-require"], ["-o", "rootless_require=true"]])
def test_require_turns_the_skip_into_an_error(pytester: pytest.Pytester, how: list[str]) -> None:
    pytester.makepyfile(TESTS)
    result = run_without_userns(pytester, *how)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        ["*rootless: isolation is required (--rootless-require) but user namespaces are disabled*"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_isolation_never_falls_back_to_the_host(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.isolated
        def test_must_not_run_on_the_host():
            raise AssertionError("ran without isolation")
        """
    )
    result = run_without_userns(pytester)
    result.assert_outcomes(skipped=1)
    assert "ran without isolation" not in result.stdout.str()
