"""A test's timeout and how its end is reported, in the process that waits for the test
process: a container's init, or the Landlock tier's keeper."""

from __future__ import annotations

import os
import signal
import time

#: faulthandler dumps every thread's stack on this signal (sent on timeout).
DUMP_SIGNAL = signal.SIGRTMAX - 1
#: How long the waiter gives the stack dump after a timeout before it kills the test.
DUMP_GRACE = 0.3


class TestTimeout:
    """Arms ``seconds`` (None: no timeout) with ITIMER_REAL: at expiry the test process
    dumps every thread's stack (faulthandler, on DUMP_SIGNAL), then is killed.
    ``expired`` says whether that happened."""

    __test__ = False  # not a pytest test class

    def __init__(self, test_pid: int, seconds: float | None) -> None:
        self.test_pid = test_pid
        self.expired = False
        if seconds is not None:
            signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds)

    def _on_alarm(self, signum: int, frame: object) -> None:
        self.expired = True
        try:
            os.kill(self.test_pid, DUMP_SIGNAL)  # faulthandler in the test dumps all stacks
        except ProcessLookupError:
            return
        time.sleep(DUMP_GRACE)
        os.kill(self.test_pid, signal.SIGKILL)


def status_fields(wait_status: int) -> dict[str, int]:
    """A child's end as the engines report it: its exit code, or 128+signal (bubblewrap,
    nsjail and Bazel do the same) with the signal named apart."""
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        return {"signal": signum, "status": 128 + signum}
    return {"status": os.waitstatus_to_exitcode(wait_status)}
