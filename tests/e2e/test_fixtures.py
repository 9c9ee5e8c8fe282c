"""Fixture scopes across the container boundary: higher scopes set up and torn down once on
the host, function scope inside; ``tmp_path`` works inside and stays on the host."""

from __future__ import annotations

import pytest

TIMEOUT = 120

# Runs on the host: the log is written next to the tests (read-only inside a container, so
# a line written from inside would fail, not land here).
CONFTEST = """
    import os
    from pathlib import Path

    import pytest

    LOG = Path(__file__).parent / "events.log"


    def log(event):
        with LOG.open("a") as f:
            f.write(f"{event} {os.getpid()}\\n")


    @pytest.fixture(scope="session")
    def session_resource():
        log("session-setup")
        yield {"made_in": os.getpid()}
        log("session-teardown")
"""

TEST_A = """
    import os

    import pytest

    from conftest import log

    pytestmark = pytest.mark.isolated


    @pytest.fixture(scope="module")
    def module_resource():
        log("module-setup")
        yield ["module", os.getpid()]
        log("module-teardown")


    @pytest.fixture
    def function_pid():
        pid = os.getpid()
        yield pid
        assert os.getpid() == 2


    @pytest.mark.parametrize("n", [1, 2, 3])
    def test_uses_all_scopes(session_resource, module_resource, function_pid, n):
        assert function_pid == 2
        assert os.getpid() == 2
        # The values made on the host are inherited as they were.
        assert session_resource["made_in"] not in (1, 2)
        assert module_resource == ["module", session_resource["made_in"]]
"""

TEST_B = """
    import os

    import pytest


    @pytest.mark.isolated
    def test_session_resource_again(session_resource):
        assert os.getpid() == 2
        assert session_resource["made_in"] not in (1, 2)
"""


def test_higher_scopes_once_on_the_host_function_scope_inside(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a=TEST_A, test_b=TEST_B)
    result = pytester.runpytest_subprocess("-p", "rootless", "-v", timeout=TIMEOUT)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*test_a.py::test_uses_all_scopes?1? PASSED*",
            "*test_a.py::test_uses_all_scopes?2? PASSED*",
            "*test_a.py::test_uses_all_scopes?3? PASSED*",
            "*test_b.py::test_session_resource_again PASSED*",
        ]
    )
    events = (pytester.path / "events.log").read_text().splitlines()
    names = [line.split()[0] for line in events]
    assert names == ["session-setup", "module-setup", "module-teardown", "session-teardown"]
    # All in one host process: the inner pytest itself, never a container's PID 2.
    pids = {line.split()[1] for line in events}
    assert len(pids) == 1
    assert pids != {"2"}


TMP_PATH = """
    import os

    import pytest


    @pytest.mark.isolated
    def test_tmp_path(tmp_path):
        assert os.getpid() == 2
        target = tmp_path / "made-inside.txt"
        target.write_text("hello from the container")
        assert target.read_text() == "hello from the container"
"""


def test_tmp_path_works_inside_and_stays_on_the_host(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TMP_PATH)
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest_subprocess(
        "-p", "rootless", f"--basetemp={basetemp}", timeout=TIMEOUT
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 passed*"])
    made = basetemp / "test_tmp_path0" / "made-inside.txt"
    assert made.read_text() == "hello from the container"


def test_only_its_own_tmp_path_reaches_the_host_from_basetemp(pytester: pytest.Pytester) -> None:
    """Host-side fixtures keep files in basetemp; an isolated test sees them, and what it
    writes there besides its own tmp_path (their files, new ones) is a copy-on-write view
    that goes with its container: only its tmp_path stays on the host."""
    basetemp = pytester.path / "basetemp"
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.fixture(scope="session")
        def golden(tmp_path_factory):
            path = tmp_path_factory.mktemp("golden") / "expected.txt"
            path.write_text("GOOD")
            return path

        @pytest.mark.isolated
        def test_inside(golden, tmp_path):
            assert golden.read_text() == "GOOD"  # visible
            (tmp_path / "mine.txt").write_text("kept")
            for victim in (golden, tmp_path.parent / "planted.txt"):
                victim.write_text("TAMPERED")
                assert victim.read_text() == "TAMPERED"  # in the container's own view

        def test_on_the_host_afterwards(golden):
            assert golden.read_text() == "GOOD"
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", f"--basetemp={basetemp}")
    result.assert_outcomes(passed=2)
    assert (basetemp / "test_inside0" / "mine.txt").read_text() == "kept"
    assert (basetemp / "golden0" / "expected.txt").read_text() == "GOOD"
    assert not (basetemp / "planted.txt").exists()


def test_writes_next_to_tmp_path_work_as_plainly(pytester: pytest.Pytester) -> None:
    """A test may write in basetemp beside its tmp_path, as a plain one does
    (``make_ssl_devcert(str(tmp_path))`` writes ``<tmp_path>.crt``), and make directories
    with tmp_path_factory: it reads them back; what it wrote beside tmp_path goes with its
    container (docs/filesystems-and-limits.md), its tmp_path stays on the host."""
    pytester.makepyfile(
        """
        import os
        import pytest

        def test_devcert(tmp_path, tmp_path_factory):
            cert = str(tmp_path) + ".crt"
            with open(cert, "w") as f:
                f.write("CERT")
            with open(cert) as f:
                assert f.read() == "CERT"
            other = tmp_path_factory.mktemp("x") / "f.txt"
            other.write_text("factory")
            assert other.read_text() == "factory"
            (tmp_path / "kept.txt").write_text("kept")
            os.rename(cert, cert + ".old")
            assert os.path.exists(cert + ".old")
        """
    )
    for isolated in (False, True):
        basetemp = pytester.path / f"basetemp-{isolated}"
        args = ["-p", "rootless", f"--basetemp={basetemp}", *(["--rootless"] * isolated)]
        result = pytester.runpytest_subprocess(*args, timeout=TIMEOUT)
        result.assert_outcomes(passed=1)
        assert (basetemp / "test_devcert0" / "kept.txt").read_text() == "kept"
    # isolated, the sibling was the container's own: the host's basetemp has none
    assert not list(basetemp.glob("*.crt*"))


def test_teardown_errors_of_both_halves_are_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def mod():
            yield
            raise RuntimeError("MODULE-TEARDOWN-BROKE")

        @pytest.fixture
        def fn():
            yield
            print("FN-TEARDOWN-STDOUT")
            raise ValueError("FUNCTION-TEARDOWN-BROKE")

        @pytest.mark.isolated
        def test_both(mod, fn):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "FUNCTION-TEARDOWN-BROKE" in out
    assert "MODULE-TEARDOWN-BROKE" in out


def test_function_teardown_output_survives_a_host_teardown_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def mod():
            yield
            raise RuntimeError("MODULE-TEARDOWN-BROKE")

        @pytest.fixture
        def fn():
            yield
            print("FN-TEARDOWN-STDOUT")

        @pytest.mark.isolated
        def test_one(mod, fn):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "MODULE-TEARDOWN-BROKE" in out
    assert "FN-TEARDOWN-STDOUT" in out


def test_higher_scoped_fixture_requested_dynamically_is_torn_down(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def server():
            print("SERVER-START")
            yield "srv"
            print("SERVER-STOP")

        @pytest.fixture
        def uses(request):
            yield request.getfixturevalue("server")
            print("FUNCTION-FIXTURE-STOP")

        @pytest.mark.isolated
        def test_one(uses):
            assert uses == "srv"
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "-s")
    result.assert_outcomes(passed=1)
    # set up and torn down in the container, after the function fixture that used it
    result.stdout.fnmatch_lines(["*SERVER-START*", "*FUNCTION-FIXTURE-STOP*", "*SERVER-STOP*"])


def test_tmp_path_factory_and_dynamic_tmp_path_inside(pytester: pytest.Pytester) -> None:
    basetemp = pytester.path / "basetemp"
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def work(tmp_path_factory):
            return tmp_path_factory.mktemp("work")

        @pytest.mark.isolated
        def test_factory(work):
            (work / "w.txt").write_text("from a function fixture")

        @pytest.mark.isolated
        def test_dynamic(request, tmp_path_factory):
            path = request.getfixturevalue("tmp_path")
            (path / "d.txt").write_text("dynamic")

        @pytest.mark.isolated
        def test_only_dynamic(request):
            with pytest.raises(RuntimeError, match="request tmp_path"):
                request.getfixturevalue("tmp_path")

        @pytest.mark.isolated
        def test_both(tmp_path, tmp_path_factory):
            other = tmp_path_factory.mktemp("other", numbered=False)
            assert other != tmp_path
            (other / "o.txt").write_text("x")

        @pytest.mark.isolated
        def test_no_tmp():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", f"--basetemp={basetemp}")
    result.assert_outcomes(passed=5)
    assert [p.read_text() for p in basetemp.glob("test_factory0/work*/w.txt")] == [
        "from a function fixture"
    ]
    assert (basetemp / "test_dynamic0" / "d.txt").read_text() == "dynamic"
    assert not (basetemp / "test_no_tmp0").exists()  # no temporary directory fixture


def test_pytester_works_inside_an_isolated_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytest_plugins = ["pytester"]

        @pytest.mark.isolated
        def test_inner(pytester):
            pytester.makepyfile("def test_ok(): pass")
            pytester.runpytest("-p", "no:rootless").assert_outcomes(passed=1)
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=1)
