"""pytest's process state that the processes after a fork change for their own work, put
back in the test process before the test runs: a test finds what it would find in a
plain run (tests/parity_corpus/case_process_state.py checks each state; docs/limits.md
lists what differs on purpose).

* **Signal handlers.** The zygote, the relay and init ignore SIGINT (Ctrl-C is the
  host's to handle) and handle SIGCHLD; the first of them to run after the fork of
  pytest saves pytest's handlers, and the test process sets each one back.
* **tempfile's cached directory.** Where pytest had chosen it (``tempfile.gettempdir()``
  ran on the host) and the choice is not usable inside (a ``TMPDIR`` that is not
  there), it is chosen again, before the test: a test that counts calls to ``os.unlink``
  around ``NamedTemporaryFile`` must not see tempfile's probe of a new directory.
* **platform's cached uname**, which holds the host's node name: the container has its
  own hostname.
* **The process's name** (``/proc/self/comm``): the zygote, the relay and init name
  themselves for ``ps`` and ``top`` (``rootless-zygote``...); the test process has
  pytest's.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
import tempfile
from typing import Any

from ...kernel import syscalls as sc
from ..options import ENV_ALWAYS

#: pytest's Python-level signal handlers, saved in the first process after its fork.
_SAVED: dict[int, Any] | None = None
#: pytest's process name, saved with them.
_NAME = b""


def save_and_name(name: bytes) -> None:
    """Save pytest's signal handlers and name, unless a process between pytest and this
    one did (a prepared init's zygote, a relay), then name this process ``name`` (its
    role: ``rootless-init``...). Call before changing any handler."""
    global _SAVED, _NAME
    if _SAVED is None:
        _SAVED = {signum: signal.getsignal(signum) for signum in signal.valid_signals()}
        _NAME = sc.get_name()
    sc.set_name(name)


def restore() -> None:
    """In a test (or call) process, after its isolation and before the test: pytest's
    state as it was at the fork, where the processes in between changed it."""
    global _SAVED
    saved, _SAVED = _SAVED, None  # a container started from the test saves its own
    for signum, handler in (saved or {}).items():
        # None: a handler not installed from Python (it was not ours to change)
        if handler is not None and signal.getsignal(signum) != handler:
            signal.signal(signum, handler)
    if saved is not None and sc.get_name() != _NAME:
        sc.set_name(_NAME)
    _choose_tempdir_again()
    _uname_again()


def _usable_dir(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def _choose_tempdir_again() -> None:
    chosen = tempfile.tempdir
    if chosen is None or _usable_dir(chosen):
        return  # not chosen yet (a plain test would probe too), or still good in here
    tempfile.tempdir = None
    tempfile.gettempdir()  # probes, as pytest once did: now, not in the middle of the test


def _uname_again() -> None:
    platform = sys.modules.get("platform")
    if platform is not None and getattr(platform, "_uname_cache", None) is not None:
        vars(platform)["_uname_cache"] = None  # (mypy knows no such attribute)
        platform.uname()


def allow_environ(env_allow: tuple[str, ...] | None) -> None:
    """Keep only the variables ``env_allow`` lists (names or globs), and ENV_ALWAYS
    (ours, set again after this); None keeps them all."""
    if env_allow is None:
        return
    for name in list(os.environ):
        if name not in ENV_ALWAYS and not any(
            fnmatch.fnmatchcase(name, pattern) for pattern in env_allow
        ):
            del os.environ[name]
