"""A hostile or careless test cannot crash the session, bloat the host or lose reports.

The test process holds the write end of the result channel (it has to: pytest runs there),
so a test can write anything into it. The host treats every frame as untrusted data.
"""

from __future__ import annotations

import os

import pytest

from pytest_rootless.runtime import statedir

# In the test process the only pipe open for writing above stdio is the result channel.
FIND_CHANNEL = """
import fcntl, json, os, stat, struct

def channel():
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and fd > 2 and writable:
                return fd
        except OSError:
            pass
    raise AssertionError("no channel")

def send(message):
    body = json.dumps(message).encode()
    os.write(channel(), struct.pack(">I", len(body)) + body)
"""


@pytest.mark.parametrize(
    "frame",
    [
        'send({"kind": "report", "data": {"$report_type": "TestReport", '
        '"nodeid": NODEID, "location": None, "keywords": {}, "outcome": "passed", '
        '"longrepr": None, "when": "call", "sections": [], "duration": 0}})',
        'send({"kind": "report", "data": {"$report_type": "TestReport", '
        '"nodeid": NODEID, "location": ["f.py", 1, "t"], "keywords": {}, "outcome": "failed", '
        '"longrepr": None, "when": "call", "sections": [], "duration": 0, '
        '"user_properties": [], "_get_verbose_word_with_markup": 1, "passed": 1}})',
        'send({"kind": "report", "data": {"$report_type": "CollectReport"}})',
        'send({"kind": "warning", "message": 1})',
        'os.write(channel(), b"\\xff\\xff\\xff\\xffgarbage")',
        'os.write(channel(), b"\\x00\\x00\\x00\\x05nope!")',
    ],
    ids=["bad-location", "shadows-methods", "wrong-type", "bad-warning", "huge-claim", "not-json"],
)
def test_forged_frames_fail_the_test_and_the_session_goes_on(
    pytester: pytest.Pytester, frame: str
) -> None:
    pytester.makepyfile(
        FIND_CHANNEL
        + f"""
import pytest

@pytest.mark.isolated
def test_forger(request):
    NODEID = request.node.nodeid
    {frame}

def test_after():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*rootless: the container sent malformed data during call*"])
    assert "INTERNALERROR" not in result.stdout.str()
    assert "Traceback" not in result.stderr.str()


def test_a_warning_flood_is_cut_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        FIND_CHANNEL
        + """
import pytest

@pytest.mark.isolated
def test_flood():
    for i in range(5000):
        send({"kind": "warning", "message": "x" * 1000, "category": "UserWarning",
              "module": "builtins", "filename": "f.py", "lineno": 1})
"""
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "-W", "default")
    result.assert_outcomes(passed=1, warnings=1001)
    result.stdout.fnmatch_lines(["*kept the first 1000 warnings of this test and dropped 4000*"])


def test_report_values_json_cannot_hold(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.isolated
        def test_props(record_property):
            record_property("matrix", {(0, 1): 0.5})
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    assert "(0, 1)" in (pytester.path / "out.xml").read_text()


def test_huge_output_is_cut_not_fatal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.isolated
        def test_loud():
            print("A" * (70 * 1024 * 1024))
            assert False
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*characters cut by pytest-rootless*"])


def test_live_output_is_flushed_to_a_pipe(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def fix():
            yield
            print("MARKER-TEARDOWN")

        @pytest.mark.isolated
        def test_quiet(fix):
            print("MARKER-CALL")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    pytester._monkeypatch.setattr(os, "environ", env)  # the inner run's stdout is a file
    result = pytester.runpytest_subprocess("-p", "rootless", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*MARKER-CALL*", "*MARKER-TEARDOWN*"])


def test_state_of_a_killed_session_is_removed_by_the_next(pytester: pytest.Pytester) -> None:
    import subprocess
    import tempfile

    finished = subprocess.Popen(["true"])
    finished.wait()
    parent = statedir.state_parent()
    stale = tempfile.mkdtemp(prefix=f"pytest-rootless-{finished.pid}-", dir=parent)
    os.mkdir(os.path.join(stale, "root-x"))
    alive = tempfile.mkdtemp(prefix=f"pytest-rootless-{os.getpid()}-", dir=parent)
    try:
        pytester.makepyfile("import pytest\n@pytest.mark.isolated\ndef test_x(): pass\n")
        pytester.runpytest_subprocess("-p", "rootless").assert_outcomes(passed=1)
        assert not os.path.exists(stale)
        assert os.path.exists(alive)  # its session still runs
    finally:
        os.rmdir(alive)


def test_a_closed_channel_fails_the_test_and_the_session_goes_on(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        FIND_CHANNEL
        + """
import pytest

@pytest.mark.isolated
def test_closer():
    os.close(channel())

def test_after():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*rootless: the test process exited with status * before reporting*"]
    )


def test_a_gigabyte_flood_keeps_the_host_bounded(pytester: pytest.Pytester) -> None:
    """1 GiB of well-formed frames: the host decodes one at a time and keeps none of
    them (an unknown kind is dropped), so its memory stays near one frame's size."""
    import resource

    pytester.makepyfile(
        FIND_CHANNEL
        + """
import struct
import pytest

@pytest.mark.isolated
def test_flood():
    body = b'{"kind": "noise", "pad": "' + b"x" * (32 << 20) + b'"}'
    frame = struct.pack(">I", len(body)) + body
    fd = channel()
    for _ in range(32):
        view = memoryview(frame)
        while view:
            view = view[os.write(fd, view):]

def test_after():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=2)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    assert peak_mib < 512, f"the host grew to {peak_mib} MiB reading 1 GiB"
