"""Prepared containers (pytest_rootless.runtime.child.zygote): a test's container is cloned
ahead of it from a copy of pytest (the zygote), which must hold exactly what pytest
itself holds when the test's turn comes. Each test here runs an inner suite both ways,
prepared and with ``--rootless-no-prepare`` (every container cloned from pytest when its
test comes), and expects the same outcome, and checks from the inner pytest which way it
went."""

from __future__ import annotations

import re

import pytest

TIMEOUT = 120

# The inner pytest says, at the end, how many zygotes it made (a zygote is made for a
# state of the host: a new one each time that state changes).
COUNT_ZYGOTES = """
    import pytest
    from pytest_rootless.runtime import prepared as prepared_containers

    MADE = []
    _init = prepared_containers.Zygote.__init__


    def counting_init(self, *args, **kwargs):
        MADE.append(1)
        _init(self, *args, **kwargs)


    prepared_containers.Zygote.__init__ = counting_init


    def pytest_terminal_summary(terminalreporter):
        terminalreporter.write_line(f"zygotes made: {len(MADE)}")
"""

# What the host sets up, and what pytest runs itself, between isolated tests: each
# isolated test must see the host as it is at its turn, as a copy made then would.
HOST_CHANGES = """
    import os

    import pytest

    STATE = {"n": 0}
    SETUPS = []


    @pytest.fixture(scope="module", params=["first", "second"])
    def phase(request):
        SETUPS.append(request.param)
        return request.param


    @pytest.fixture(scope="session")
    def late_session():
        return os.getpid()  # set up on the host, first requested by a later test


    def test_host_sets_one():
        STATE["n"] = 1  # not isolated: runs in pytest itself


    @pytest.mark.isolated
    def test_sees_one():
        assert os.getpid() == 2 and os.getppid() == 1
        assert STATE["n"] == 1


    @pytest.mark.isolated
    def test_still_sees_one():
        assert STATE["n"] == 1
        STATE["n"] = 99  # the container's copy only


    def test_host_sets_two():
        assert STATE["n"] == 1
        STATE["n"] = 2


    @pytest.mark.isolated
    def test_sees_two():
        assert STATE["n"] == 2


    @pytest.mark.isolated
    def test_sees_two_again():
        assert STATE["n"] == 2


    @pytest.mark.isolated
    def test_late_session_fixture_is_the_hosts(late_session):
        assert late_session != os.getpid()


    @pytest.mark.isolated
    def test_param_a(phase):
        assert SETUPS[-1] == phase  # the module fixture's current value, set up on the host


    @pytest.mark.isolated
    def test_param_b(phase):
        assert SETUPS[-1] == phase


    @pytest.mark.isolated
    def test_param_c(phase):
        assert SETUPS[-1] == phase


    @pytest.mark.isolated
    def test_fails_on_purpose():
        assert False


    @pytest.mark.isolated
    def test_sees_the_failure_counted(request):
        assert request.session.testsfailed == 1
"""


def run_inner(
    pytester: pytest.Pytester, prepare: bool, conftest: str, **modules: str
) -> pytest.RunResult:
    """The inner suite, prepared or with --rootless-no-prepare."""
    pytester.makeconftest(conftest)
    pytester.makepyfile(**modules)
    args = ["-p", "rootless", "-v"] + ([] if prepare else ["--rootless-no-prepare"])
    return pytester.runpytest_subprocess(*args, timeout=TIMEOUT)


BOTH_WAYS = pytest.mark.parametrize("prepare", [True, False], ids=["prepared", "no-prepare"])


@BOTH_WAYS
def test_every_test_sees_the_host_as_it_is_at_its_turn(
    pytester: pytest.Pytester, prepare: bool
) -> None:
    result = run_inner(pytester, prepare, COUNT_ZYGOTES, test_host=HOST_CHANGES)
    result.assert_outcomes(passed=14, failed=1)
    made = [line for line in result.outlines if line.startswith("zygotes made: ")]
    assert made, result.stdout.str()
    count = int(made[-1].split(": ")[1])
    if prepare:
        # one per state of the host that two isolated tests in a row ran in, at least
        assert count >= 2, result.stdout.str()
    else:
        assert count == 0, result.stdout.str()


# Classes and modules, some set up with nothing (bare), some with a class fixture or a
# setup_class: each test checks pytest's stack of set-up nodes and the fixtures' values.
CLASSES_ONE = """
    import os

    import pytest

    pytestmark = pytest.mark.isolated
    CALLS = []


    def stack_names(request):
        return [node.name for node in request.session._setupstate.stack]


    @pytest.fixture(scope="class")
    def cfix():
        CALLS.append(1)
        return len(CALLS)


    class TestA:
        def test_1(self, request):
            assert os.getpid() == 2
            assert stack_names(request)[-2:] == ["TestA", "test_1"]

        def test_2(self):
            pass


    class TestB:
        def test_1(self):
            pass

        def test_2(self, request):
            assert stack_names(request)[-3:] == ["test_one.py", "TestB", "test_2"]


    class TestC:
        def test_1(self, cfix):
            assert cfix == 1

        def test_2(self, cfix):
            assert cfix == 1


    class TestD:
        def test_1(self, cfix):
            assert cfix == 2  # set up again for this class, on the host

        def test_2(self, request):
            assert request.getfixturevalue("cfix") == 2


    class TestE:
        x = 0

        @classmethod
        def setup_class(cls):
            cls.x = 5

        def test_1(self):
            assert self.x == 5

        def test_2(self):
            assert self.x == 5


    class TestF:
        def test_1(self, request):
            assert request.getfixturevalue("cfix") == 3  # first asked for here

        def test_2(self, request):
            assert request.getfixturevalue("cfix") == 3
"""

CLASSES_TWO = """
    import pytest

    pytestmark = pytest.mark.isolated


    class TestG:
        def test_1(self, request):
            names = [node.name for node in request.session._setupstate.stack]
            assert names[-3:] == ["test_two.py", "TestG", "test_1"], names

        def test_2(self):
            pass
"""


@BOTH_WAYS
def test_a_zygote_serves_the_next_class_when_setting_it_up_ran_nothing(
    pytester: pytest.Pytester, prepare: bool
) -> None:
    """A zygote stays for the next class or module when the host set up nothing for it
    (no fixture of a wider scope, no setup_class): the test process puts the new nodes on
    pytest's stack and takes the old ones off, and every test sees what it would see in a
    copy made at its turn. Zygotes: TestA (the first, serving TestB), TestC and TestD (a
    class fixture each), TestE (setup_class), TestF (after TestE's setup_class, serving
    test_two.py's TestG too)."""
    result = run_inner(pytester, prepare, COUNT_ZYGOTES, test_one=CLASSES_ONE, test_two=CLASSES_TWO)
    result.assert_outcomes(passed=14)
    assert f"zygotes made: {5 if prepare else 0}" in result.outlines, result.stdout.str()


# A class-scoped fixture of tests outside any class: pytest sets it up for each test and
# tears it down with it (SubRequest's fallback to the item), so the container must, never
# the host. The inner pytest says what the host's copy of the module saw.
OUTSIDE_A_CLASS = """
    import os

    import pytest

    pytestmark = pytest.mark.isolated
    EVENTS = []


    @pytest.fixture(scope="class")
    def per_test():
        EVENTS.append("setup")
        yield os.getpid()
        EVENTS.append("teardown")


    class TestBare:
        def test_1(self):
            pass

        def test_2(self):
            pass


    def test_f(per_test):
        assert per_test == os.getpid() == 2
        assert EVENTS == ["setup"]


    def test_g(per_test):
        assert per_test == os.getpid() == 2
        assert EVENTS == ["setup"]
"""

HOST_EVENTS = """
    import sys


    def pytest_terminal_summary(terminalreporter):
        events = sys.modules["test_outside"].EVENTS
        terminalreporter.write_line(f"host events: {events}")
"""


@BOTH_WAYS
def test_a_class_fixture_outside_a_class_is_the_tests_own(
    pytester: pytest.Pytester, prepare: bool
) -> None:
    result = run_inner(pytester, prepare, HOST_EVENTS, test_outside=OUTSIDE_A_CLASS)
    result.assert_outcomes(passed=4)
    assert "host events: []" in result.outlines, result.stdout.str()


MANY_TRIVIAL = """
    import os

    import pytest

    pytestmark = pytest.mark.isolated


    @pytest.mark.parametrize("n", range(30))
    def test_trivial(n, tmp_path):
        assert os.getpid() == 2
        (tmp_path / "mine").write_text(str(n))
        assert os.listdir(tmp_path) == ["mine"]


    @pytest.mark.parametrize("n", range(5))
    def test_fails(n):
        assert n < 0
"""


def test_one_zygote_serves_a_module_and_outcomes_match(pytester: pytest.Pytester) -> None:
    """Thirty-five tests in one module, one state of the host: one zygote prepares every
    container; the outcomes and each test's own tmp_path are as without preparing."""
    pytester.makeconftest(COUNT_ZYGOTES)
    pytester.makepyfile(test_many=MANY_TRIVIAL)
    prepared = pytester.runpytest_subprocess("-p", "rootless", timeout=TIMEOUT)
    prepared.assert_outcomes(passed=30, failed=5)
    assert "zygotes made: 1" in prepared.outlines, prepared.stdout.str()
    plain = pytester.runpytest_subprocess(
        "-p", "rootless", "--rootless-no-prepare", timeout=TIMEOUT
    )
    plain.assert_outcomes(passed=30, failed=5)
    assert "zygotes made: 0" in plain.outlines, plain.stdout.str()


BROKEN_NEXT = """
    import pytest


    @pytest.mark.isolated
    def test_fine():
        pass


    @pytest.mark.isolated(writable=["/usr/share/rootless-does-not-exist"])
    def test_cannot_be_built():
        pass


    @pytest.mark.isolated
    def test_fine_again():
        pass
"""


def test_a_container_that_cannot_be_prepared_fails_as_without_preparing(
    pytester: pytest.Pytester,
) -> None:
    """The next test's container is prepared while the current one runs; one that cannot
    be built is built again when its test comes, which then reports why, as always."""
    pytester.makepyfile(test_broken=BROKEN_NEXT)
    result = pytester.runpytest_subprocess("-p", "rootless", timeout=TIMEOUT)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_cannot_be_built*",
            "*writable path /usr/share/rootless-does-not-exist does not exist*",
        ]
    )


NO_CHANNEL_FOR_PROGRAMS = """
    import fcntl
    import os
    import subprocess
    import sys

    import pytest

    pytestmark = pytest.mark.isolated(writable=["."])


    @pytest.mark.parametrize("n", range(4))
    def test_what_a_program_it_runs_inherits(n):
        # every fd past stdio is close-on-exec: the result channel, the ack pipe, the
        # crash channel and pytest's own files never reach a program the test starts
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and os.path.exists(f"/proc/self/fd/{fd}"):
                target = os.readlink(f"/proc/self/fd/{fd}")
                assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, target
        listing = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.listdir('/proc/self/fd')))"],
            close_fds=False, capture_output=True, text=True, check=True,
        ).stdout
        assert listing.strip() == "['0', '1', '2', '3']"  # stdio, and the listing's own
        with open(f"written-{n}", "w") as f:
            f.write("x")
"""


def test_channels_stay_close_on_exec_and_writes_are_reported(pytester: pytest.Pytester) -> None:
    """A prepared init receives the test's channels over a socket and the test process
    moves them to the host's numbers: they stay close-on-exec, and the overlays' store
    (opened by init while building) stays readable for --rootless-report-writes."""
    pytester.makepyfile(test_programs=NO_CHANNEL_FOR_PROGRAMS)
    result = pytester.runpytest_subprocess(
        "-p", "rootless", "--rootless-report-writes", timeout=TIMEOUT
    )
    result.assert_outcomes(passed=4)
    for n in range(4):
        result.stdout.fnmatch_lines(
            [f"*test_what_a_program_it_runs_inherits?{n}?*", f"*added*/written-{n}"]
        )


STATS_SUITE = """
    import pytest

    isolated = pytest.mark.isolated


    @isolated
    def test_a1():
        pass


    @isolated
    def test_a2():
        pass


    @pytest.mark.isolated(memory="256M")
    def test_with_a_limit():
        pass  # a container with cgroups is never prepared ahead


    def test_on_the_host():
        pass


    @isolated
    def test_after_the_host():
        pass


    @isolated
    def test_after_the_host_again():
        pass


    @isolated
    class TestBare:
        def test_c1(self):
            pass

        def test_c2(self):
            pass


    @pytest.fixture(scope="class")
    def group():
        return "set up on the host, once for the class"


    @isolated
    @pytest.mark.usefixtures("group")
    class TestGroup:
        def test_b1(self):
            pass

        def test_b2(self):
            pass

        def test_b3(self):
            pass
"""


def _stats_section(result: pytest.RunResult) -> list[str]:
    lines = result.outlines
    heads = [n for n, line in enumerate(lines) if "rootless: where the time went" in line]
    assert heads, result.stdout.str()
    return lines[heads[-1] + 1 : heads[-1] + 10]


def test_stats_say_what_was_prepared_and_why_zygotes_were_made(pytester: pytest.Pytester) -> None:
    """--rootless-stats counts the containers, those prepared ahead, the zygotes and the
    cause of each (the host's own test, a new class), and measures every stage of each."""
    pytester.makepyfile(test_stats=STATS_SUITE)
    result = pytester.runpytest_subprocess("-p", "rootless", "--rootless-stats", timeout=TIMEOUT)
    result.assert_outcomes(passed=11)
    lines = _stats_section(result)
    text = "\n".join(lines)
    # 10 isolated tests; zygotes for test_a1 (first), test_after_the_host (a test ran on
    # the host; it serves TestBare too, set up with nothing) and TestGroup (a new class,
    # with a class fixture set up on the host): each zygote's first container is built on
    # request, the others are prepared; test_with_a_limit never is.
    assert "containers: 10 for tests, 6 prepared ahead (60%), 4 built" in text, text
    assert "3 built by the zygote on request" in text, text
    assert "1 options never prepared ahead" in text, text
    assert "zygotes (copies of pytest that prepare containers): 3 made" in text, text
    for cause in ("1 the first", "1 a test run on the host", "1 a new class"):
        assert cause in text, text
    for stage in ("build", "hand-over", "teardown"):
        assert any(stage in line and "(10 measured)" in line for line in lines), text


def test_stats_add_up_the_workers_of_pytest_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_stats=STATS_SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "rootless", "--rootless-stats", "-n", "2", timeout=TIMEOUT
    )
    result.assert_outcomes(passed=11)
    text = "\n".join(_stats_section(result))
    assert "containers: 10 for tests" in text, text
    assert "(10 measured)" in text, text


FDS_SEEN = """
    import os

    import pytest


    @pytest.mark.isolated
    @pytest.mark.parametrize("n", range(3))
    def test_fds(n):
        fds = sorted(int(name) for name in os.listdir("/proc/self/fd"))
        print(f"FDS {n}: {fds[:-1]}")  # the last is the listing's own
"""


def test_a_prepared_test_process_holds_the_fds_one_forked_at_its_turn_does(
    pytester: pytest.Pytester,
) -> None:
    """The test process of a prepared container is forked ahead and gets its channels
    later (runtime.child.ahead): it must hold the same fd numbers, and no more, as one
    forked when its test came."""
    pytester.makepyfile(test_fds=FDS_SEEN)

    def seen(*args: str) -> list[str]:
        result = pytester.runpytest_subprocess("-p", "rootless", "-s", *args, timeout=TIMEOUT)
        result.assert_outcomes(passed=3)
        return re.findall(r"FDS \d: \[[\d, ]*\]", result.stdout.str())

    prepared, at_turn = seen(), seen("--rootless-no-prepare")
    assert len(prepared) == 3, prepared
    assert prepared == at_turn
