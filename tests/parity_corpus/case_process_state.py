# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""The process state a test sees: what a module fixture saw (on the host, for an
isolated test) is what the test sees (in its container), and what isolation changes on
purpose (HOME, TMPDIR, the hostname, docs/limits.md) is what the docs promise."""

import faulthandler
import gc
import io
import locale
import logging
import os
import platform
import resource
import signal
import socket
import stat
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from unittest import mock

import pytest
from _pytest.logging import LogCaptureHandler

# A library that picks its scratch directory at import: tempfile has chosen by the time
# any test runs.
SCRATCH = tempfile.gettempdir()

#: Differ on purpose: what the test finds instead is checked in test_home_and_tmpdir.
OWN_VARIABLES = {"HOME", "TMPDIR", "PYTEST_DEBUG_TEMPROOT", "PYTEST_CURRENT_TEST"}


def _on_signal(signum, frame):
    raise KeyboardInterrupt


def _pattern(regex):
    return getattr(regex, "pattern", regex)


def _lasting_handlers():
    """The root logger's handlers but those made for one phase of one test (pytest's
    LogCaptureHandler; pytest-rootless's stand-in on the host, while it sets up a
    module fixture, a StreamHandler into a StringIO)."""
    return [
        h
        for h in logging.getLogger().handlers
        if not isinstance(h, LogCaptureHandler)
        and not (type(h) is logging.StreamHandler and isinstance(h.stream, io.StringIO))
    ]


def _state():
    # RLIMIT_DATA is the default memory ceiling in a container with no memory option
    # (ini rootless_default_memory): a difference on purpose, see docs/limits.md.
    rlimits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in dir(resource)
        if name.startswith("RLIMIT_") and name != "RLIMIT_DATA"
    }
    umask = os.umask(0o022)
    os.umask(umask)
    return {
        "signals": {int(s): signal.getsignal(s) for s in signal.valid_signals()},
        "umask": umask,
        "cwd": os.getcwd(),
        "argv": list(sys.argv),
        "path": list(sys.path),
        "environ": {k: v for k, v in os.environ.items() if k not in OWN_VARIABLES},
        "stdio": [type(s).__name__ for s in (sys.stdin, sys.stdout, sys.stderr)],
        "stdio_fds": [stat.S_IFMT(os.fstat(fd).st_mode) for fd in (0, 1, 2)],
        "encoding": (sys.getfilesystemencoding(), sys.stdout.encoding),
        "locale": locale.setlocale(locale.LC_ALL),
        "logging": (
            logging.getLogger().level,
            [(type(h).__name__, h.level) for h in _lasting_handlers()],
            logging.raiseExceptions,
        ),
        "faulthandler": faulthandler.is_enabled(),
        "warnings": [(a, _pattern(m), c, _pattern(mod), n) for a, m, c, mod, n in warnings.filters],
        "threads": [t.name for t in threading.enumerate()],
        "rlimits": rlimits,
        "recursion": (sys.getrecursionlimit(), sys.getswitchinterval()),
        "gc": (gc.isenabled(), gc.get_threshold()),
        "tempdir": tempfile.tempdir,
        "name": Path("/proc/self/comm").read_text(),
    }


def test_sigint_is_keyboardinterrupt_by_default():
    """(Before any fixture of this module changes it.)"""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.fixture(scope="module")
def host_state():
    """Set up with the module: a suite's own SIGINT and SIGCHLD handlers, then what the
    process looks like."""
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGUSR1)}
    previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    yield _state()
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize(
    "name",
    [
        "signals",
        "umask",
        "cwd",
        "argv",
        "path",
        "environ",
        "stdio",
        "stdio_fds",
        "encoding",
        "locale",
        "logging",
        "faulthandler",
        "warnings",
        "threads",
        "rlimits",
        "recursion",
        "gc",
        "name",
    ],
)
def test_state_is_the_hosts(host_state, name):
    assert _state()[name] == host_state[name]


def test_tempfile_does_no_extra_work(host_state):
    """tempfile chose its directory before the test: NamedTemporaryFile unlinks only its
    own file (a real suite spies on os.unlink and counts)."""
    with mock.patch("os.unlink", wraps=os.unlink) as unlink:
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"x")
    assert [call.args[0] for call in unlink.call_args_list] in ([], [f.name])
    assert tempfile.tempdir is not None


def test_home_and_tmpdir():
    """HOME is a directory the test may write (isolated: a fresh empty one), TMPDIR
    (where set) and tempfile's choice too (isolated: the fresh /tmp)."""
    home = os.environ["HOME"]
    assert Path.home() == Path(home) == Path(os.path.expanduser("~"))
    for path in (home, os.environ.get("TMPDIR", home), tempfile.gettempdir()):
        assert os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK), path


def test_hostname_caches():
    """platform's cached uname names this machine, as the socket module does."""
    assert platform.node() == socket.gethostname() == os.uname().nodename
