"""The Landlock tier, after fork: where user namespaces are refused, an isolated test runs
in a forked process confined by Landlock (landlock(7)) instead of a container.

The host forks the **keeper**, which takes a container init's place: it makes itself a
child subreaper (PR_SET_CHILD_SUBREAPER, so every orphan of the test, a double-forked
daemon included, becomes its child), joins the test's cgroups, forks the **test
process** and reaps until it ends, with the same timeout, status and channel as init
(:mod:`.init`). Then it kills every process left under it: there is no PID namespace to
end them.

The test process makes itself what a container's test process is as far as the kernel
allows without a namespace: a new session, no capabilities, ``no_new_privs``, the
terminal seccomp filter, the rlimits, no inherited fds; then a Landlock domain in which
it may write only under its ``tmp_path``, a private TMPDIR and a fresh HOME, and (ABI 6)
may not signal nor reach the abstract unix sockets of any process outside it. Landlock
also refuses ptrace of processes outside the domain, ``/proc/PID/mem`` and
``environ`` included.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import tempfile
from dataclasses import dataclass, field
from typing import NoReturn

from ...kernel import landlock, libc, procfs
from ...kernel import syscalls as sc
from ...protocol import framing
from ...protocol.messages import Result
from ..limits import ProcessLimits
from ..spec import Payload
from . import hoststate
from .init import _close_inherited_fds
from .leave import EXIT_SETUP_FAILED, _parent_gone, run_then_exit
from .timeout import DUMP_SIGNAL, TestTimeout, status_fields

#: Device files a test may open for writing (and truncate: ``> /dev/null`` in a shell).
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/ptmx")
#: Directories of devices a test may write to: the pseudo-terminals it opens itself.
WRITABLE_DEVICE_DIRS = ("/dev/pts",)

#: The keeper's exit status when the host asked it to end the test (SIGTERM).
EXIT_ENDED_BY_HOST = 75


@dataclass(frozen=True)
class SandboxSpec:
    """Everything the keeper and the test process need, decided on the host before the
    fork."""

    #: The only places the test may write: its tmp_path, TMPDIR and HOME.
    writable: tuple[str, ...]
    home: str
    tmpdir: str
    abi: int
    env: tuple[tuple[str, str], ...]
    #: Host variables that pass in (names or globs); None: all (see options.env_allow).
    env_allow: tuple[str, ...] | None
    cwd: str
    timeout: float | None
    keep_fds: frozenset[int]
    last_cap: int
    trace: bool = False
    #: cgroup.procs files the keeper moves itself into (memory and pids limits).
    cgroups: tuple[str, ...] = ()
    rlimits: ProcessLimits = field(default_factory=ProcessLimits)


def sandbox_main(spec: SandboxSpec, result_fd: int, crash_fd: int, payload: Payload) -> NoReturn:
    """Entry point of the keeper, right after fork. Never returns."""
    run_then_exit("init", result_fd, lambda: _keeper(spec, result_fd, crash_fd, payload))


def _end_every_process(signum: int = 0, frame: object = None) -> None:
    """SIGKILL every process under the keeper until none is left: orphans re-parent to
    it (a subreaper), so each round reaps the ones whose parents died in the last."""
    me = os.getpid()
    while True:
        for pid in procfs.descendants(me):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _ended_by_host(signum: int, frame: object) -> None:
    _end_every_process()
    os._exit(EXIT_ENDED_BY_HOST)


def _keeper(spec: SandboxSpec, result_fd: int, crash_fd: int, payload: Payload) -> int:
    libc.set_tracing(spec.trace)
    # The host ends the test (a backstop timeout, malformed data) with SIGTERM, and so
    # does the host's death: either way every process of the test goes first.
    signal.signal(signal.SIGTERM, _ended_by_host)
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM, "PR_SET_PDEATHSIG")
    if _parent_gone(result_fd):
        return EXIT_SETUP_FAILED
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the host's to handle
    for procs in spec.cgroups:  # first, so that every process of the test is counted
        with open(procs, "w") as f:
            f.write("0")
        libc.trace_note(f"write({procs!r}, '0')")
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1, "PR_SET_CHILD_SUBREAPER")
    if spec.trace:
        framing.send(result_fd, {"kind": Result.TRACE, "stage": "init", "lines": list(libc.TRACE)})
        libc.TRACE.clear()
    # Not dumpable, as a container's init: outside the test's Landlock domain anyway.
    sc.prctl(sc.PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")
    test_pid = os.fork()
    if test_pid == 0:
        _test_process(spec, result_fd, crash_fd, payload)
    _close_inherited_fds({result_fd})
    try:
        _reap(spec, result_fd, test_pid)
    finally:
        _end_every_process()
    return 0


def _reap(spec: SandboxSpec, result_fd: int, test_pid: int) -> None:
    """Reap every child (orphans re-parent to the keeper) until the test process ends,
    ending it on its timeout after a stack dump, as a container's init does."""
    timeout = TestTimeout(test_pid, spec.timeout)
    while True:
        pid, wait_status = os.waitpid(-1, 0)
        if pid == test_pid:
            break
    if spec.timeout is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
    framing.send(
        result_fd, {"kind": Result.EXIT, "timed_out": timeout.expired, **status_fields(wait_status)}
    )


def confine(spec: SandboxSpec) -> None:
    """The Landlock domain of the test process: writes only under ``spec.writable`` (and
    to the harmless devices), and, from ABI 6, signals and abstract unix sockets only
    within the domain. Reading and executing stay as the user's rights allow."""
    handled = landlock.write_rights(spec.abi)
    ruleset = landlock.landlock_create_ruleset(handled, landlock.scopes(spec.abi), spec.abi)
    try:
        for path in spec.writable:
            landlock.landlock_add_rule(ruleset, path, handled)
        file_rights = handled & (landlock.AccessFs.WRITE_FILE | landlock.AccessFs.TRUNCATE)
        for path in WRITABLE_DEVICES:
            if os.path.exists(path):
                landlock.landlock_add_rule(ruleset, path, file_rights)
        for path in WRITABLE_DEVICE_DIRS:
            if os.path.isdir(path):
                landlock.landlock_add_rule(ruleset, path, file_rights)
        landlock.landlock_restrict_self(ruleset)
    finally:
        os.close(ruleset)


def _has_capabilities() -> bool:
    permitted = procfs.status_field("CapPrm")
    return permitted is None or int(permitted, 16) != 0


def _isolate(spec: SandboxSpec, keep: set[int]) -> None:
    """Make this fresh child of the keeper the test process: the steps of a container's
    (:func:`.init._isolate`) that need no namespace, then the Landlock domain."""
    libc.TRACE.clear()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the keeper's handler
    sc.prctl(sc.PR_SET_DUMPABLE, 1, "PR_SET_DUMPABLE")
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    libc.trace_note("setsid()")
    if _has_capabilities():  # real root (an unprivileged user has none to drop)
        sc.cap_drop_all(spec.last_cap)
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    sc.seccomp_filter_test_process()
    spec.rlimits.apply()  # before Landlock: it may write /proc/self/oom_score_adj
    confine(spec)
    _close_inherited_fds(set(spec.keep_fds) | {0, 1, 2} | keep)
    hoststate.allow_environ(spec.env_allow)  # only what the user listed (and ours, below)
    os.environ.update(dict(spec.env))
    os.environ["HOME"] = spec.home
    for name in ("TMPDIR", "PYTEST_DEBUG_TEMPROOT"):
        os.environ[name] = spec.tmpdir
    tempfile.tempdir = None  # the host's cached choice is not writable in here
    os.chdir(spec.cwd)


def _test_process(spec: SandboxSpec, result_fd: int, crash_fd: int, payload: Payload) -> NoReturn:
    def isolate_and_run() -> int:
        _isolate(spec, {result_fd, crash_fd})
        faulthandler.enable(file=crash_fd, all_threads=True)
        faulthandler.register(DUMP_SIGNAL, file=crash_fd, all_threads=True, chain=False)
        if spec.trace:
            framing.send(
                result_fd, {"kind": Result.TRACE, "stage": "test", "lines": list(libc.TRACE)}
            )
        libc.set_tracing(False)
        return payload(result_fd)

    run_then_exit("test", result_fd, isolate_and_run)
