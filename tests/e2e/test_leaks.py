"""Nothing outlives its container, nor pytest: daemons, SIGKILL, and a short soak.

Processes are found the way an operator would: by a unique token in their argv or
environment, scanning the host's ``/proc``. A test that leaves a process behind must
show it running first (or the check that it is gone proves nothing).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .. import procscan

SOAK = Path(__file__).parents[2] / "scripts" / "soak.py"

#: How long the kernel may take to tear a container down after its init died. Only an
#: upper bound for polling: the checks end as soon as the processes are gone.
GONE_WITHIN = 10.0


def wait_until_gone(token: str) -> dict[int, list[str]]:
    """The processes carrying ``token`` in their argv or environment once the wait ended
    (``{}``: none)."""
    return procscan.gone(token, GONE_WITHIN, environ=True)


# The inner tests leave processes in three shapes: a background child, a double-forked
# setsid daemon with its fds closed (the shape of a real daemon, re-parented to the
# container's init), and a setsid one started through os.system. Each carries a tag
# (the token) as its $0; the test sees them all running, the next test (on the host, after
# the container's teardown) sees none.
DAEMONS = """
import os, subprocess, time
import pytest

import procscan

TOKEN = {token!r}


def tags():
    # The tags ($0 of each shell left) running, as a set: for a moment a process on its
    # way to becoming one of them (setsid before its exec) carries the same tag.
    running = procscan.tagged(TOKEN).values()
    return {{arg for argv in running for arg in argv if arg.startswith(TOKEN)}}


def daemonize(tag):
    if os.fork() == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                os.closerange(0, 1024)
                os.execvpe("sh", ["sh", "-c", "sleep 300; true", f"{{TOKEN}}-{{tag}}"],
                           dict(os.environ, LEAK_TOKEN=TOKEN))
        finally:
            os._exit(0)
    os.wait()


def leave(tag):
    subprocess.Popen(["sh", "-c", "sleep 300; true", f"{{TOKEN}}-{{tag}}-child"])
    daemonize(f"{{tag}}-daemon")
    os.system(f"setsid sh -c 'sleep 300; true' {{TOKEN}}-{{tag}}-system "
              "</dev/null >/dev/null 2>&1 &")


def wait_for(*wanted):
    wanted = {{f"{{TOKEN}}-{{tag}}-{{shape}}" for tag in wanted
               for shape in ("child", "daemon", "system")}}
    # one reading decides: two can differ (a process in the middle of an exec)
    return procscan.settle(tags, lambda found: found == wanted, 30) == wanted


def assert_none_left():
    assert procscan.settle(tags, lambda left: not left, {gone_within}) == set()


def test_a_container_leaves_daemons(container):
    container.start(leave, "start").wait(30)
    container.run(leave, "run")
    assert wait_for("start", "run")  # seen from the host: they run


def test_they_are_gone_after_its_teardown():
    assert_none_left()


def test_factory_containers_leave_daemons(container_factory):
    a, b = container_factory(), container_factory(hostname="b")
    a.start(leave, "a").wait(30)
    b.run(leave, "b")
    assert wait_for("a", "b")
    a.close()
    assert wait_for("b")  # a's are gone at close(), b's still run


def test_and_after_the_factory_teardown():
    assert_none_left()


@pytest.mark.isolated
def test_an_isolated_test_leaves_daemons():
    leave("isolated")
    assert wait_for("isolated")  # seen in the container's own /proc


def test_and_after_the_isolated_test():
    assert_none_left()
"""


def test_daemons_do_not_outlive_their_container(pytester: pytest.Pytester) -> None:
    token = f"rootless-leak-{uuid.uuid4().hex}"
    body = DAEMONS.format(token=token, gone_within=GONE_WITHIN)
    pytester.makepyfile(body, procscan=procscan.source())
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=body.count("\ndef test_"))
    assert wait_until_gone(token) == {}


# Killed in the middle: an isolated test, and a test driving a live container. Both left
# a child and a setsid daemon, and are asleep when pytest gets SIGKILL. The test file is
# named after the token, so pytest's own argv carries it, and with it every process
# forked from pytest: the relay, the container's init and the test process.
KILLED = """
import os, subprocess, time
import pytest

TOKEN = {token!r}


def leave(tag):
    subprocess.Popen(["sh", "-c", "sleep 300; true", f"{{TOKEN}}-{{tag}}-child"])
    subprocess.run(["sh", "-c", f"setsid sh -c 'sleep 300; true' {{TOKEN}}-{{tag}}-daemon "
                    "</dev/null >/dev/null 2>&1 &"], check=True)


@pytest.mark.isolated
def test_isolated():
    leave("isolated")
    time.sleep(300)


def test_container(container):
    container.start(leave, "live").wait(30)
    container.start(time.sleep, 300)
    time.sleep(300)
"""


@pytest.mark.parametrize("kind", ["isolated", "container"])
@pytest.mark.parametrize(
    "threads",
    [
        pytest.param([], id="single-threaded"),
        # faulthandler's watchdog thread: containers then start through a relay process
        pytest.param(["-o", "faulthandler_timeout=600"], id="threaded"),
    ],
)
def test_sigkill_to_pytest_leaves_no_container_process(
    pytester: pytest.Pytester, kind: str, threads: list[str]
) -> None:
    token = f"rootless_killed_{uuid.uuid4().hex}"  # a valid module name: the test file's
    test_file = pytester.makepyfile(**{f"test_{token}": KILLED.format(token=token)})
    log_path = pytester.path / "pytest.log"
    command = [sys.executable, "-m", "pytest", "-p", "rootless", "-p", "no:cacheprovider"]
    command += [*threads, "-s", "-k", f"test_{kind}", str(test_file)]
    with open(log_path, "wb") as log:
        host = subprocess.Popen(command, cwd=pytester.path, stdout=log, stderr=subprocess.STDOUT)
    try:
        daemon = f"{token}-{'isolated' if kind == 'isolated' else 'live'}-daemon"
        # pytest, the container's init, the sleeping process inside (the test process,
        # or a call process), the child and the daemon; and the relay with threads
        everyone = 5 + bool(threads)
        deadline = time.monotonic() + 60
        # One reading decides: two can differ (a process in the middle of an exec, whose
        # argv reads empty for that moment).
        while True:
            running = procscan.tagged(token, environ=True)
            daemons = procscan.tagged(daemon, environ=True)
            if daemons and len(running) >= everyone:
                break
            if time.monotonic() >= deadline or host.poll() is not None:
                break
            time.sleep(0.05)
        assert daemons, log_path.read_text(errors="replace")
        assert host.pid in running
        assert len(running) >= everyone, running
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    assert wait_until_gone(token) == {}, log_path.read_text(errors="replace")


def test_short_soak(tmp_path: Path) -> None:
    """The soak (scripts/soak.py, `tox -e soak` runs 5000) on 300 tests: pytest's fds
    flat, no zombie or container process left, RSS growth under 10 %."""
    done = subprocess.run(
        [sys.executable, str(SOAK), "--count", "300", "--every", "50", "--warmup", "50"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "PASS", done.stdout
    fds = re.search(r"^fds: +first (\d+), last (\d+), max (\d+)$", done.stdout, re.M)
    assert fds is not None, done.stdout
    assert len(set(fds.groups())) == 1
    assert re.search(r"^outcomes: .* of 300 tests", done.stdout, re.M), done.stdout
