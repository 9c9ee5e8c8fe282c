"""Ending a process: SIGKILL by pid or through a pidfd, and reaping it (kill(2),
pidfd_send_signal(2), waitpid(2))."""

from __future__ import annotations

import os
import signal


def kill(pid: int) -> None:
    """SIGKILL ``pid`` (nothing if it is gone). Only for a child not yet reaped: its pid
    cannot have been given to another process."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_pidfd(pidfd: int) -> None:
    """SIGKILL the process ``pidfd`` refers to (nothing if it is gone): never another
    process that got the same pid after it ended (pidfd_open(2))."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap(pid: int) -> tuple[int, int]:
    """Wait for the child ``pid`` to end: ``(pid, wait status)``; the status is 0 when
    another waiter reaped it first."""
    while True:
        try:
            return os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return pid, 0


def kill_and_reap(pid: int) -> int:
    """SIGKILL the child ``pid`` and reap it; its wait status."""
    kill(pid)
    return reap(pid)[1]
