"""Where isolation applies: the marker on functions, classes and modules, ``--rootless``,
the closest marker winning per option, usage errors for bad options, ``--rootless-off``."""

from __future__ import annotations

import pytest

TIMEOUT = 120

# Inside a container the test process is PID 2 (init is PID 1); on the host it never is.
MARKED_PLACES = """
    import os

    import pytest


    @pytest.mark.isolated
    def test_function_marker():
        assert os.getpid() == 2


    @pytest.mark.isolated
    class TestClassMarker:
        def test_one(self):
            assert os.getpid() == 2

        def test_two(self):
            assert os.getpid() == 2


    def test_unmarked_runs_on_the_host():
        assert os.getpid() != 2
"""

MODULE_MARKER = """
    import os

    import pytest

    pytestmark = pytest.mark.isolated


    def test_module_marker():
        assert os.getpid() == 2


    class TestInClass:
        def test_method(self):
            assert os.getpid() == 2
"""


def test_marker_on_function_and_class(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MARKED_PLACES)
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*::test_function_marker PASSED*",
            "*::TestClassMarker::test_one PASSED*",
            "*::TestClassMarker::test_two PASSED*",
            "*::test_unmarked_runs_on_the_host PASSED*",
        ]
    )


def test_marker_as_module_pytestmark(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MODULE_MARKER)
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*::test_module_marker PASSED*",
            "*::TestInClass::test_method PASSED*",
        ]
    )


UNMARKED = """
    import os


    def test_unmarked():
        assert os.getpid() == 2


    class TestUnmarked:
        def test_method(self):
            assert os.getpid() == 2
"""


def test_rootless_option_isolates_unmarked_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(UNMARKED)
    result = pytester.runpytest_subprocess("-p", "rootless", "--rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "rootless: isolating every test (--rootless)*",
            "*::test_unmarked PASSED*",
            "*::TestUnmarked::test_method PASSED*",
        ]
    )


CLOSEST_WINS = """
    import socket

    import pytest

    pytestmark = pytest.mark.isolated(hostname="mod")


    @pytest.mark.isolated(hostname="fn")
    def test_function_marker_wins():
        assert socket.gethostname() == "fn"


    def test_module_marker_applies():
        assert socket.gethostname() == "mod"


    @pytest.mark.isolated(hostname="cls")
    class TestClass:
        def test_class_marker_wins(self):
            assert socket.gethostname() == "cls"

        @pytest.mark.isolated(hostname="meth")
        def test_method_marker_wins(self):
            assert socket.gethostname() == "meth"


    @pytest.mark.isolated(root=True)
    def test_other_option_keeps_module_hostname():
        import os
        assert os.getuid() == 0
        assert socket.gethostname() == "mod"
"""


def test_closest_marker_wins_per_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CLOSEST_WINS)
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*::test_function_marker_wins PASSED*",
            "*::test_module_marker_applies PASSED*",
            "*::TestClass::test_class_marker_wins PASSED*",
            "*::TestClass::test_method_marker_wins PASSED*",
            "*::test_other_option_keeps_module_hostname PASSED*",
        ]
    )


BAD_OPTION = """
    from pathlib import Path

    import pytest


    def test_unmarked_first():
        # Runs on the host: if this file exists after the run, tests ran despite the error.
        (Path(__file__).parent / "ran.txt").write_text("ran")


    @pytest.mark.isolated({option})
    def test_bad():
        pass
"""


@pytest.mark.parametrize(
    ("option", "name"),
    [
        pytest.param("network=3", "network", id="network-int"),
        pytest.param('hostname="a/b"', "hostname", id="hostname-slash"),
        pytest.param("timeout=-1", "timeout", id="timeout-negative"),
        pytest.param("bogus=1", "bogus", id="unknown-option"),
        pytest.param('env={"A": 1}', "env", id="env-non-string"),
        pytest.param('env_allow="PATH"', "env_allow", id="env-allow-string"),
        pytest.param('memory="lots"', "memory", id="memory-lots"),
        pytest.param("pids=-1", "pids", id="pids-negative"),
        pytest.param("cpu=0", "cpu", id="cpu-zero"),
        pytest.param('hostname="h" * 65', "hostname", id="hostname-too-long"),
        pytest.param('rootfs="/no/such/root"', "rootfs", id="rootfs-missing"),
        pytest.param('mounts={"/data": "/no/such/dir"}', "mounts", id="mounts-missing"),
    ],
)
def test_bad_option_is_a_usage_error(pytester: pytest.Pytester, option: str, name: str) -> None:
    pytester.makepyfile(BAD_OPTION.replace("{option}", option))
    result = pytester.runpytest_subprocess("-p", "rootless", timeout=TIMEOUT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # The error names the test, the option and what it accepts.
    result.stderr.fnmatch_lines([f"*test_bad*option*{name}*accepted*"])
    result.stdout.no_fnmatch_line("*passed*")
    assert not (pytester.path / "ran.txt").exists()


ENV_ALLOW = """
    import os

    import pytest

    MARK = {mark}


    @MARK
    def test_env():
        assert "ROOTLESS_TOKEN" not in os.environ  # listed nowhere
        assert os.environ["ROOTLESS_KEPT_A"] == "a"  # by a glob
        assert os.environ["ROOTLESS_SET"] == "by env"  # the env option, always set
        assert os.path.isdir(os.environ["HOME"]) and not os.listdir(os.environ["HOME"])
        assert "PATH" not in os.environ
"""


@pytest.mark.parametrize(
    ("mark", "ini"),
    [
        pytest.param(
            'pytest.mark.isolated(env_allow=["ROOTLESS_KEPT_*"], env={"ROOTLESS_SET": "by env"})',
            "",
            id="marker",
        ),
        pytest.param(
            "pytest.mark.isolated",
            "rootless_env_allow =\n    ROOTLESS_KEPT_*\nrootless_env = ROOTLESS_SET=by env\n",
            id="ini",
        ),
    ],
)
def test_env_allow_passes_only_listed_variables(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mark: str, ini: str
) -> None:
    monkeypatch.setenv("ROOTLESS_TOKEN", "secret")
    monkeypatch.setenv("ROOTLESS_KEPT_A", "a")
    pytester.makeini("[pytest]\n" + ini)
    pytester.makepyfile(ENV_ALLOW.replace("{mark}", mark))
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(passed=1)


def test_without_env_allow_every_variable_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROOTLESS_TOKEN", "secret")
    pytester.makepyfile(
        """
        import os

        import pytest


        @pytest.mark.isolated
        def test_env():
            assert os.environ["ROOTLESS_TOKEN"] == "secret"
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", timeout=TIMEOUT)
    result.assert_outcomes(passed=1)


def test_header_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.isolated
        def test_ok():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", timeout=TIMEOUT)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["rootless: isolating tests marked @pytest.mark.isolated*"])


OFF = """
    import os

    import pytest


    @pytest.mark.isolated
    def test_marked_runs_on_the_host():
        assert os.getpid() != 2


    @pytest.mark.isolated(hostname="notused")
    def test_marked_with_options_runs_on_the_host():
        assert os.getpid() != 2
"""


def test_rootless_off_runs_marked_tests_on_the_host(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(OFF)
    result = pytester.runpytest_subprocess("-p", "rootless", "--rootless-off", timeout=TIMEOUT)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "rootless: OFF (--rootless-off)*",
            "*WARNING: --rootless-off*",
        ]
    )
