"""What every container of one session shares, made once on the host: the host's support
(decided by one real trial container), the user's identity, the mount plans and the state
directory they live in, the crash channel, the reaper of ended containers, and the limits
backend with the cgroups it made.

Nothing here knows pytest: the pytest layer says which paths a container sees
(:meth:`ContainerSession.spec`) and which fds its processes keep.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..kernel import syscalls as sc
from ..kernel.paths import is_under
from ..protocol import framing
from . import launch, limits, probe, rootfs, skeleton, statedir
from .mountplan import Plan
from .options import Options
from .spec import ContainerSpec, Payload

#: Size of each fresh tmpfs of a container (ini rootless_tmpfs_size): a test that fills
#: one gets ENOSPC rather than eating the host's memory.
DEFAULT_TMPFS_SIZE = 1 << 30


def stdio_fds(identities: set[tuple[int, int]] | None = None) -> frozenset[int]:
    """The fds a container's processes keep: 0-2 and every fd that is the same open file
    as one of them (or as one of ``identities``, (st_dev, st_ino) pairs). Every other
    inherited fd gets closed."""
    identities = set(identities or ())
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        identities.add((st.st_dev, st.st_ino))
    keep = {0, 1, 2}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in identities:
            keep.add(fd)
    return frozenset(keep)


@dataclass
class ContainerSession:
    """The containers of one session: their shared, computed-once parts. A forked copy (an
    isolated test that makes containers itself) starts afresh: see :meth:`fresh_if_forked`."""

    trace: bool = False
    tmpfs_size: int | None = DEFAULT_TMPFS_SIZE
    #: RLIMIT_DATA headroom of every process of a container with no ``memory`` option
    #: (ini rootless_default_memory; None: none), so that a runaway cannot take the host's
    #: memory.
    memory_ceiling: int | None = field(default_factory=limits.default_ceiling)
    #: The fds every container's processes keep (computed once, on first use).
    fds: Callable[[], frozenset[int]] = stdio_fds
    support: probe.Support | None = None
    crash: launch.CrashChannel | None = None
    reaper: launch.Reaper = field(default_factory=launch.Reaper)
    keep_fds: frozenset[int] | None = None
    identity: rootfs.Identity = field(default_factory=rootfs.host_identity)
    plans: dict[tuple[Any, ...], Plan] = field(default_factory=dict)
    python_paths: tuple[tuple[tuple[str, ...], int], list[str]] | None = None
    hidden: frozenset[str] | None = None  # see hidden_projects
    state_dir: str | None = None
    backend: limits.Backend | None = None
    #: cgroups of reaped containers that would not go yet (retried, and at the end)
    cgroups_left: list[limits.Cgroups] = field(default_factory=list)
    containers: int = 0  # containers made, to name their cgroups
    owner: int = field(default_factory=os.getpid)  # the process these facts are about
    host_pid: int = field(default_factory=os.getpid)  # the process that made them first

    def fresh_if_forked(self) -> bool:
        """Make these facts this process's. Inside an isolated test (a forked copy),
        everything computed on the host is the host's: its support, prepared roots, fds
        and pending containers. Start afresh there; True if that just happened."""
        if self.owner == os.getpid():
            return False
        self.owner = os.getpid()
        self.support = self.crash = self.keep_fds = self.python_paths = self.state_dir = None
        self.backend = None
        self.cgroups_left = []
        self.reaper = launch.Reaper()
        self.identity = rootfs.host_identity()
        self.hidden = None
        self.plans = {}
        return True

    @property
    def nested(self) -> bool:
        """In a copy of the process that made this session (inside a container)."""
        return self.owner != self.host_pid

    def close(self) -> None:
        if self.owner != os.getpid():
            return  # a copy inherited by a container: the host owns all of it
        self.reaper.close()
        self.cgroups_left = [cg for cg in self.cgroups_left if not cg.remove()]
        if self.crash is not None:
            self.crash.close()
            self.crash = None
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None

    # -- the host's support, from one real trial container
    def probe(self) -> probe.Support:
        self.fresh_if_forked()
        if self.support is None:
            self.support = probe.support_from_trial(self._trial)
        return self.support

    def _trial(self) -> tuple[bool, str | None, int | None, str]:
        spec = self.spec(Options(), ro_paths=[])
        outcome = self.run(spec, lambda fd: 0, lambda message: None)
        if outcome.setup_error is not None:
            err = outcome.setup_error
            return False, err.get("call"), err.get("errno"), str(err.get("message"))
        if outcome.status != 0:
            return False, None, None, f"the trial container ended with status {outcome.status}"
        return True, None, None, ""

    def crash_channel(self) -> launch.CrashChannel:
        self.fresh_if_forked()
        if self.crash is None:
            self.crash = launch.CrashChannel()
        return self.crash

    def run(
        self,
        spec: ContainerSpec,
        payload: Payload,
        on_message: Callable[[framing.Message], None],
        cgroups: limits.Cgroups | None = None,
    ) -> launch.Outcome:
        """Clone a container of ``spec`` from this process, run ``payload`` in its test
        process, and follow it to its end."""
        crash = self.crash_channel()
        on_gone = None if cgroups is None else functools.partial(self.remove_cgroups, cgroups)
        return launch.run(spec, payload, on_message, crash, self.reaper, on_gone)

    # -- limits
    def limits_backend(self) -> limits.Backend:
        self.fresh_if_forked()
        if self.backend is None:
            self.backend = limits.detect()
        return self.backend

    def cgroups_for(self, options: Options) -> limits.Cgroups | None:
        """The cgroups a container of ``options`` runs in, made now; None if it needs
        none. Raises CgroupError, and OptionError where a limit cannot be enforced."""
        if options.memory is None and options.pids is None:
            return None
        backend = self.limits_backend()
        problem = backend.check(options)
        if problem is not None:
            raise limits.CgroupError(errno.EPERM, problem)
        self.containers += 1
        cgroups = limits.Cgroups.make(backend, options, str(self.containers))
        return cgroups if cgroups.paths else None

    def remove_cgroups(self, cgroups: limits.Cgroups) -> None:
        self.cgroups_left = [cg for cg in self.cgroups_left if not cg.remove()]
        if not cgroups.remove():
            self.cgroups_left.append(cgroups)

    # -- what a container of these options needs
    def keep(self) -> frozenset[int]:
        if self.keep_fds is None:
            self.keep_fds = self.fds()  # once: pytest's own fds do not change
        return self.keep_fds

    def _python_paths(self) -> list[str]:
        key = (tuple(sys.path), len(sys.modules))
        if self.python_paths is None or self.python_paths[0] != key:
            self.python_paths = (key, rootfs.python_paths())
        return self.python_paths[1]

    def hidden_projects(self) -> frozenset[str]:
        """Directories that must stay hidden even when pytest runs from them (with no ini
        file): a container shows the test's own directory instead."""
        self.fresh_if_forked()
        if self.hidden is None:
            homes = {self.identity.home, self.identity.account_home}
            paths = ("/", "/tmp", "/var/tmp", "/home", *homes)
            self.hidden = frozenset(os.path.realpath(p) for p in paths if p)
        return self.hidden

    def plan(
        self, options: Options, ro_paths: Sequence[str], cwd: str, writable: tuple[str, ...]
    ) -> Plan:
        """The mount plan of a container of ``options`` that shows ``ro_paths`` (besides
        Python's own) read-only: made once per set of inputs, then reused."""
        ro = [*self._python_paths(), *ro_paths]
        key = (options.rootfs, options.hostname, options.mounts, tuple(ro), cwd, writable)
        plan = self.plans.get(key)
        if plan is None:
            ro = [p for p in ro if os.path.realpath(p) != "/"]
            if self.state_dir is None:
                self.state_dir = statedir.new_state_dir()
            plan = rootfs.build_plan(
                rootfs=options.rootfs,
                ident=self.identity,
                hostname=options.hostname,
                ro_paths=ro,
                cwd=cwd,
                mounts=options.mounts,
                state_dir=self.state_dir,
                writable=writable,
                tmpfs_size=self.tmpfs_size,
            )
            plan = skeleton.make_skeleton(
                plan, tempfile.mkdtemp(dir=self.state_dir, prefix="root-")
            )
            self.plans[key] = plan
        return plan

    def spec(
        self,
        options: Options,
        ro_paths: Sequence[str],
        writable_base: str | None = None,
        rw_binds: tuple[str, ...] = (),
        cgroups: limits.Cgroups | None = None,
        report_writes: bool = False,
        copy_on_write: tuple[str, ...] = (),
    ) -> ContainerSpec:
        """Everything a container of ``options`` needs, decided now. Relative ``writable``
        paths are relative to ``writable_base`` (the project's root; default: the current
        directory). ``copy_on_write``: more absolute paths made writable as ``writable``
        paths are, whatever the options."""
        self.fresh_if_forked()
        ceiling = self.memory_ceiling if options.memory is None else None
        rlimits = (
            limits.ProcessLimits.of(self.limits_backend(), options, ceiling)
            if options.memory or options.pids or options.cpu
            else limits.ProcessLimits(data_growth=ceiling)
        )
        cwd = os.getcwd()
        # writable: absolute, or relative to the project's root ("." is the project)
        writable = tuple(
            os.path.normpath(os.path.join(writable_base or cwd, os.path.expanduser(p)))
            for p in options.writable
        ) + tuple(os.path.normpath(p) for p in copy_on_write)
        return ContainerSpec(
            plan=self.plan(options, ro_paths, cwd, writable),
            rw_binds=rw_binds,
            report_writes=report_writes,
            outer_uid=os.geteuid(),
            outer_gid=os.getegid(),
            root=options.root,
            hostname=options.hostname,
            share_network=options.network == "host",
            env=options.env,
            env_allow=options.env_allow,
            cwd=cwd,
            timeout=options.timeout,
            keep_fds=self.keep(),
            trace=self.trace,
            last_cap=sc.cap_last_cap(),
            cgroups=cgroups.procs_files if cgroups is not None else (),
            rlimits=rlimits,
        )


def visible_paths(rootdir: str, extra: Sequence[str], directory: str | None) -> list[str]:
    """The read-only paths a container shows besides Python's: ``extra``, the project's
    root (if any) and ``directory`` (a test's own) when it lies outside the project."""
    ro = [*extra] + ([rootdir] if rootdir else [])
    if directory is not None and (not rootdir or not is_under(directory, rootdir)):
        ro.append(directory)
    return ro
