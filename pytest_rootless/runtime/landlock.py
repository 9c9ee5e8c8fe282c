"""The Landlock tier, the host's side: whether this kernel has Landlock and what the tier
then guarantees (:class:`Tier`), a test's private TMPDIR and HOME (:class:`Scratch`), and
one test's sandbox run to its end (:func:`run`), read with the same channel as a
container's (:func:`.launch._collect`). What runs after the fork is in
:mod:`.child.landlocked`."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from ..kernel import landlock, processes
from ..kernel import syscalls as sc
from ..kernel.libc import SyscallError
from ..protocol import framing
from . import launch, statedir
from .child.landlocked import SandboxSpec, sandbox_main
from .spec import Payload
from .stale import PREFIX

#: Accepted values of --rootless-fallback / ini rootless_fallback.
FALLBACKS = ("none", "landlock")


@dataclass(frozen=True)
class Tier:
    """What the Landlock tier can do on this kernel: its ABI version, or why it cannot run."""

    abi: int | None
    reason: str = ""

    @classmethod
    def probe(cls) -> Tier:
        try:
            return cls(landlock.landlock_abi_version())
        except SyscallError as exc:
            return cls(None, landlock.unavailable_reason(exc.errno or 0))

    @property
    def ok(self) -> bool:
        return self.abi is not None

    def missing(self) -> list[str]:
        """The guarantees of the tier this kernel's ABI lacks."""
        if self.abi is None:
            return []
        lacks = []
        if self.abi < 2:  # LANDLOCK_ACCESS_FS_REFER came with ABI 2 (Linux 5.19)
            lacks.append(
                "moving or linking files between directories (no REFER right: EXDEV, "
                "even inside tmp_path)"
            )
        if self.abi < landlock.SCOPE_ABI:
            lacks += [
                "signal scoping (the test can signal your other processes)",
                "abstract unix socket scoping (the test can connect to the host's abstract "
                "sockets)",
            ]
        return lacks

    def describe(self, cause: str) -> str:
        """The header's line: the tier in force, why, and what it lacks."""
        text = (
            f"isolation: landlock ABI {self.abi} ({cause}): no PID, network, UTS or IPC "
            "namespace (the test sees the host's processes, network and hostname, and reads "
            "what your user can read); writes only to tmp_path, a private TMPDIR and HOME"
        )
        if self.missing():
            return (
                f"{text}; ptrace confined to the test; MISSING with Landlock ABI "
                f"{self.abi} (needs {landlock.SCOPE_ABI}, Linux 6.12): "
                + " and ".join(self.missing())
            )
        return f"{text}; signals, ptrace and abstract unix sockets confined to the test"


def short_cause(reason: str) -> str:
    """Why namespaces are refused, in a few words, from the probe's reason."""
    cause = reason.split("; fix:")[0]
    if "seccomp" in cause:
        return "user namespaces refused by seccomp"
    if "AppArmor" in cause:
        return "user namespaces restricted by AppArmor"
    if "max_user_namespaces = 0" in cause:
        return "user namespaces disabled: user.max_user_namespaces = 0"
    if "unprivileged_userns_clone = 0" in cause:
        return "user namespaces disabled: kernel.unprivileged_userns_clone = 0"
    return cause


class Scratch:
    """A test's private TMPDIR and HOME, made fresh and empty on the host, removed after
    the test (as a container's tmpfs are). Named after the session's pid, so that what a
    killed session left is removed by the next one (see :mod:`.stale`)."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(
            prefix=f"{PREFIX}{os.getpid()}-landlock-", dir=statedir.state_parent()
        )
        self.tmpdir = os.path.join(self.base, "tmp")
        self.home = os.path.join(self.base, "home")
        for path in (self.tmpdir, self.home):
            os.mkdir(path, 0o700)

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class Keeper:
    """The keeper of one test's sandbox (see :mod:`.child.landlocked`), our child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def kill(self) -> None:
        """End the test: the keeper kills every process under it, then exits."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def run(
    spec: SandboxSpec,
    payload: Payload,
    on_message: Callable[[framing.Message], None],
    crash: launch.CrashChannel,
) -> launch.Outcome:
    """Fork the keeper, follow what the test sends (``on_message`` for each frame), and
    wait until the keeper has ended every process of the test."""
    crash.reset()
    pid, read_fd = launch.start_child(
        sc.fork, lambda write_fd: sandbox_main(spec, write_fd, crash.fd, payload)
    )
    keeper = Keeper(pid)
    outcome = launch.Outcome()
    try:
        launch._collect(keeper.kill, read_fd, spec.timeout, outcome, on_message)
    except BaseException:
        keeper.kill()
        raise
    finally:
        os.close(read_fd)
        # Synchronous: no process of this test may outlive it into the next one.
        outcome.init_status = os.waitstatus_to_exitcode(processes.reap(pid)[1])
    if outcome.status is None or outcome.status != 0 or outcome.timed_out:
        outcome.crash_text = crash.read()
    return outcome
