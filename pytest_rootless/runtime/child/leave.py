"""How every process after fork ends: only through ``os._exit``, a failure sent up its
channel as data first (CPython's ``subprocess`` discipline: a child never raises into
pytest's stack)."""

from __future__ import annotations

import os
import select
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from ...kernel import libc
from ...protocol import framing
from ...protocol.messages import Result

# Bound at import: a test may patch os._exit (a CLI's tests do) and leave it patched.
_exit = os._exit

#: Exit status of init when building the container failed (sysexits' EX_SOFTWARE).
EXIT_SETUP_FAILED = 70


def run_then_exit(
    stage: str, result_fd: int | Callable[[], int], body: Callable[[], int]
) -> NoReturn:
    """Run ``body`` in a child and leave only through ``os._exit`` with its status; an
    exception goes up the channel (``result_fd``, or where it says then) as data: a child
    never raises into pytest's stack."""
    status = EXIT_SETUP_FAILED
    try:
        status = body()
    except BaseException as exc:
        try:
            framing.send(
                result_fd() if callable(result_fd) else result_fd, _error_message(exc, stage)
            )
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):  # os._exit skips it: -s output to a pipe
            try:
                stream.flush()
            except BaseException:
                pass
        _exit(status)


def _error_message(exc: BaseException, stage: str) -> framing.Message:
    return {
        "kind": Result.SETUP_ERROR,
        "stage": stage,
        "type": type(exc).__name__,
        "errno": getattr(exc, "errno", None),
        "call": getattr(exc, "call", None),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "trace": list(libc.TRACE),
    }


def _parent_gone(result_fd: int) -> bool:
    """True if the host already closed its end (PDEATHSIG came too late to fire): a pipe
    whose reader is gone polls POLLERR, a socket whose peer is gone POLLHUP (but what it
    sent before, such as a prepared init's test, is still to be read)."""
    poller = select.poll()
    poller.register(result_fd, select.POLLOUT | select.POLLIN)
    for _, ev in poller.poll(0):
        if ev & select.POLLERR or (ev & select.POLLHUP and not ev & select.POLLIN):
            return True
    return False
