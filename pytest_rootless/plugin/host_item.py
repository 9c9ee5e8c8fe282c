"""One pytest item in a container: host-side setup and teardown, the container side of
pytest's runtest protocol, and reports that come back as data.

The split follows the contract on fixture scopes:

* on the host, before the clone: the collector chain is set up and every fixture of
  class, module, package or session scope the item uses is created, once per scope, as
  pytest would; the container inherits them through fork (copy-on-write);
* in the container: pytest's own ``pytest_runtest_protocol`` for the item (every
  plugin's wrappers, the function-scoped fixtures, the test, their teardown), with the
  hooks that *log* a test forwarded: each report goes up through
  ``pytest_report_to_serializable`` as a JSON frame the moment it is logged, each
  warning as data; the test process goes on once the host has logged the report;
* on the host: each report is logged through ``pytest_runtest_logreport`` as it arrives
  (the teardown's merged with the host's own teardown of higher scopes, as ``nextitem``
  requires), each warning shown to pytest's ``catch_warnings`` for the item; what the
  test recorded for junitxml, set in ``config.cache`` or measured for coverage.py comes
  up at its end and joins the host's.

Four private pytest attributes are used, all stable since pytest 3.9 and exercised by the
suite on pytest 8 and 9: ``session._setupstate`` (the stack of set-up nodes, to set up
and tear down each half), the item's ``_request`` and ``_fixtureinfo`` (to create the
higher-scoped fixtures on the host), and ``config._tmp_path_factory`` (the object behind
``tmp_path_factory``, to make each test's writable directory). Three more only where
present (see the README): the terminal writer's ``_current_line``, the junitxml plugin's
``node_reporters``/``global_properties``, a SubtestReport's ``_subtest.context``.
Everything else is public API and hooks; no ``_pytest`` module is imported.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import dataclasses
import errno
import faulthandler
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy
import pytest

from ..kernel import libc
from ..kernel import syscalls as sc
from ..protocol import framing
from ..runtime import launch, mountplan, prepared, rootfs, statedir
from ..runtime import limits as limits_mod
from ..runtime import probe as probe_mod
from ..runtime.child.changes import CHANGE_KINDS
from ..runtime.options import Options
from ..runtime.spec import ChildSpec, Payload, spec_data, spec_from_data

#: Size of each fresh tmpfs of a container (ini rootless_tmpfs_size): a test that fills
#: one gets ENOSPC rather than eating the host's memory.
DEFAULT_TMPFS_SIZE = 1 << 30

Phase = Literal["setup", "call", "teardown"]
#: The report section that names the limit a test was stopped by.
LIMIT_SECTION = "rootless: limit reached"
PHASES: tuple[Phase, ...] = ("setup", "call", "teardown")
_HOOKSPEC = pluggy.HookspecMarker("pytest")
_HOOKIMPL = pluggy.HookimplMarker("pytest")


# --- session state --------------------------------------------------------------------------


class CoverageSink:
    """The host's end of ContainerCoverage: lines and arcs measured in test processes and
    container calls, checked, and kept in memory until they join the data of the
    Coverage measuring pytest (see flush): pytest-cov saves and combines that data as it
    always does (xdist workers' too), ``coverage run`` saves it at exit. No file is
    written from a container, and none of ours is left beside coverage.py's."""

    def __init__(self) -> None:
        self.data: Any = None
        self.arcs: bool | None = None
        self.owner = os.getpid()

    def add(self, message: framing.Message) -> None:
        """Take one frame: ``{"arcs": bool, "contexts": {context: {path: lines or
        arcs}}}``, the lines (or arcs) measured under each dynamic context."""
        arcs, contexts = message.get("arcs"), message.get("contexts")
        if not isinstance(arcs, bool) or not isinstance(contexts, dict):
            raise framing.ProtocolError("a coverage frame is malformed")
        checked = {context: _checked_coverage(files, arcs) for context, files in contexts.items()}
        data = self._data(arcs)
        if data is None:
            return
        nested = data is not self.data  # the live measurement of a test process
        for context, files in checked.items():
            if not nested:
                data.set_context(context)
            if arcs:
                data.add_arcs(files)
            else:
                data.add_lines(files)

    def _data(self, arcs: bool) -> Any:
        if self.owner != os.getpid():  # a test process's copy: it runs containers itself
            self.owner, self.data, self.arcs = os.getpid(), None, None
        module: Any = sys.modules.get("coverage")
        current = module.Coverage.current() if module is not None else None
        if current is None:
            return None  # pytest is not measured any more (or never was)
        if ContainerCoverage.active is current:  # nested: into what goes up from here
            return current.get_data()
        if self.data is None:
            self.data = module.CoverageData(no_disk=True)
            self.arcs = arcs
            # Where pytest's session does not flush (run_isolated in a script):
            # before coverage.py's own exit handler, registered earlier so run later.
            atexit.register(self.flush)
        if self.arcs != arcs:
            raise framing.ProtocolError("a coverage frame mixes lines and arcs")
        return self.data

    def flush(self) -> None:
        """Add what was received to the data of the Coverage measuring pytest, while it
        still measures: at the end of the test loop, before pytest-cov stops, saves and
        combines (plugin.py), and at the end of the session and of the process."""
        if self.owner != os.getpid() or self.data is None:
            return
        module: Any = sys.modules.get("coverage")
        current = module.Coverage.current() if module is not None else None
        if current is not None:
            current.get_data().update(self.data)
            self.data = self.arcs = None


def _checked_coverage(files: object, arcs: bool) -> dict[str, list[Any]]:
    """A coverage frame's ``{path: [line, ...]}`` or ``{path: [[from, to], ...]}``."""
    if not isinstance(files, dict):
        raise framing.ProtocolError("a coverage frame is malformed")
    size = 2 if arcs else 1
    checked: dict[str, list[Any]] = {}
    for path, entries in files.items():
        if not isinstance(path, str) or not isinstance(entries, list):
            raise framing.ProtocolError("a coverage frame is malformed")
        for entry in entries:
            numbers = entry if arcs else [entry]
            if not (
                isinstance(numbers, list)
                and len(numbers) == size
                and all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)
            ):
                raise framing.ProtocolError("a coverage frame is malformed")
        checked[path] = [tuple(e) for e in entries] if arcs else entries
    return checked


#: This process's sink (the host's), for isolated tests and live containers alike.
COVERAGE = CoverageSink()


@dataclass
class SessionState:
    """Per-session facts computed once: the host's support, plans, fds pytest needs.
    ``config`` is None outside pytest (``run_isolated``)."""

    config: pytest.Config | None
    trace: bool = False
    report_writes: bool = False  # --rootless-report-writes
    #: What each isolated test wrote outside /tmp, HOME and tmp_path, by node id.
    writes: dict[str, dict[str, str]] = field(default_factory=dict)
    tmpfs_size: int | None = DEFAULT_TMPFS_SIZE
    support: probe_mod.Support | None = None
    crash: launch.CrashChannel | None = None
    reaper: launch.Reaper = field(default_factory=launch.Reaper)
    keep_fds: frozenset[int] | None = None
    identity: rootfs.Identity = field(default_factory=rootfs.host_identity)
    plans: dict[tuple[Any, ...], mountplan.Plan] = field(default_factory=dict)
    python_paths: tuple[tuple[tuple[str, ...], int], list[str]] | None = None
    state_dir: str | None = None
    limits: limits_mod.Backend | None = None
    #: cgroups of reaped containers that would not go yet (retried, and at the end)
    cgroups_left: list[limits_mod.Cgroups] = field(default_factory=list)
    containers: int = 0  # containers made, to name their cgroups
    #: Clones the inits of the next tests' containers ahead of them (see zygote.zygote_main).
    zygote: prepared.Zygote | None = None
    #: Prepare containers ahead of their tests (off: --rootless-no-prepare).
    prepare: bool = True
    #: Tests pytest ran itself (not isolated): each may change what a copy of it holds.
    local_runs: int = 0
    #: tmp_path directories made for the next test along with its prepared container.
    tmp_ahead: dict[str, TmpPath] = field(default_factory=dict)
    #: Where each item is in session.items (a request names the item by its index).
    item_index: dict[int, int] = field(default_factory=dict)
    unsupported: int = 0
    isolated: int = 0
    owner: int = field(default_factory=os.getpid)  # the process these facts are about
    host_pid: int = field(default_factory=os.getpid)  # pytest's own process

    def _here(self) -> None:
        """Inside an isolated test (a forked copy), everything computed on the host is the
        host's: its support, prepared roots, fds and pending containers. Start afresh."""
        if self.owner == os.getpid():
            return
        self.owner = os.getpid()
        self.support = self.crash = self.keep_fds = self.python_paths = self.state_dir = None
        self.limits = self.zygote = None
        self.cgroups_left = []
        self.tmp_ahead = {}
        self.reaper = launch.Reaper()
        self.identity = rootfs.host_identity()
        self.plans = {}

    def close(self) -> None:
        if self.owner != os.getpid():
            return  # a copy inherited by a container: the host owns all of it
        COVERAGE.flush()
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None
        self.reaper.close()
        for made in self.tmp_ahead.values():  # for tests that did not come (-x, Ctrl-C)
            made.tidy_unused()
        self.tmp_ahead = {}
        self.cgroups_left = [cg for cg in self.cgroups_left if not cg.remove()]
        if self.crash is not None:
            self.crash.close()
            self.crash = None
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None

    # -- the host's support, from one real trial container
    def probe(self) -> probe_mod.Support:
        self._here()
        if self.support is None:
            self.support = probe_mod.trial(self._trial)
        return self.support

    def _trial(self) -> tuple[bool, str | None, int | None, str]:
        spec = self.child_spec(Options(), item=None)
        outcome = self.run_container(spec, lambda fd: 0, lambda message: None)
        if outcome.setup_error is not None:
            err = outcome.setup_error
            return False, err.get("call"), err.get("errno"), str(err.get("message"))
        if outcome.status != 0:
            return False, None, None, f"the trial container ended with status {outcome.status}"
        return True, None, None, ""

    def run_container(
        self,
        spec: ChildSpec,
        payload: Payload,
        on_message: Callable[[framing.Message], None],
        cgroups: limits_mod.Cgroups | None = None,
    ) -> launch.Outcome:
        self._here()
        if self.crash is None:
            self.crash = launch.CrashChannel()
        on_gone = None if cgroups is None else functools.partial(self.remove_cgroups, cgroups)
        return launch.run(spec, payload, on_message, self.crash, self.reaper, on_gone)

    # -- prepared containers (see zygote.zygote_main)
    def preparing(self, options: Options) -> bool:
        """Whether a container of ``options`` is prepared ahead: not for the ones whose
        init does more than build and reap (a named network's relay, cgroups), nor when
        the trace shows every step of each container as it happens."""
        return (
            self.prepare
            and self.config is not None
            and not self.trace
            and options.network in ("none", "host")
            and options.memory is None
            and options.pids is None
        )

    def index_of(self, item: pytest.Item) -> int | None:
        """Where ``item`` is in session.items (None: not there, a plugin's own item)."""
        if id(item) not in self.item_index:
            self.item_index = {id(it): n for n, it in enumerate(item.session.items)}
        return self.item_index.get(id(item))

    def run_prepared(
        self,
        item: pytest.Item,
        spec: ChildSpec,
        job: framing.Message,
        ack_fd: int,
        on_message: Callable[[framing.Message], None],
        ahead: tuple[pytest.Item, Options] | None,
    ) -> launch.Outcome | None:
        """Run the test in a prepared container, and have the next test's prepared
        meanwhile; None if there is no zygote for the host as it is now and making one
        would not pay (or the container could not be prepared): the caller builds it."""
        self._here()
        if self.crash is None:
            self.crash = launch.CrashChannel()
        state = _host_state(item, self)
        if self.zygote is not None and self.zygote.fingerprint != state:
            self.zygote.close()  # made before the host changed: it would run stale copies
            self.zygote = None
        # The host changes when the next test has other nodes to set up (another module,
        # class): a zygote made for this test alone would cost one more fork of pytest.
        if ahead is not None and ahead[0].parent is not item.parent:
            ahead = None
        if self.zygote is None and ahead is None:
            return None
        if self.zygote is None:
            try:
                self.zygote = prepared.Zygote(
                    functools.partial(_job_payload, item.session, self), state, self._fds()
                )
            except OSError:  # no fork for it now: the container is cloned from pytest
                return None
        try:
            outcome = prepared.run_prepared(
                self.zygote,
                _spec_key(spec),
                spec,
                job,
                ack_fd,
                on_message,
                self.crash,
                self.reaper,
                then=lambda: self._try_preparing_ahead(ahead),
            )
        except launch.ContainerError:  # the zygote is gone: before the test was handed over
            self.zygote.close()
            self.zygote = None
            return None
        return outcome

    def _prepare_ahead(self, ahead: tuple[pytest.Item, Options] | None) -> None:
        """Have the zygote build the next test's container (its test is running now)."""
        if ahead is None or self.zygote is None or not self.preparing(ahead[1]):
            return
        item, options = ahead
        made = self.tmp_ahead.get(item.nodeid) or self.tmp_path_for(item)
        if made is not None:
            self.tmp_ahead[item.nodeid] = made
        spec = self.child_spec(options, item, rw_binds=(made.path,) if made else ())
        self.zygote.prepare(_spec_key(spec), spec)

    def _try_preparing_ahead(self, ahead: tuple[pytest.Item, Options] | None) -> None:
        """Best effort, while the current test runs: what fails here (the zygote gone, its
        tmp_path or root not made) happens again when the next test comes, which then
        reports it, as its own."""
        try:
            self._prepare_ahead(ahead)
        except Exception:
            pass

    # -- limits
    def limits_backend(self) -> limits_mod.Backend:
        self._here()
        if self.limits is None:
            self.limits = limits_mod.detect()
        return self.limits

    def cgroups_for(self, options: Options) -> limits_mod.Cgroups | None:
        """The cgroups a container of ``options`` runs in, made now; None if it needs
        none. Raises CgroupError, and OptionError where a limit cannot be enforced."""
        if options.memory is None and options.pids is None:
            return None
        backend = self.limits_backend()
        problem = backend.check(options)
        if problem is not None:
            raise limits_mod.CgroupError(errno.EPERM, problem)
        self.containers += 1
        cgroups = limits_mod.Cgroups.make(backend, options, str(self.containers))
        return cgroups if cgroups.paths else None

    def remove_cgroups(self, cgroups: limits_mod.Cgroups) -> None:
        self.cgroups_left = [cg for cg in self.cgroups_left if not cg.remove()]
        if not cgroups.remove():
            self.cgroups_left.append(cgroups)

    # -- what a container of these options needs
    def _python_paths(self) -> list[str]:
        key = (tuple(sys.path), len(sys.modules))
        if self.python_paths is None or self.python_paths[0] != key:
            self.python_paths = (key, rootfs.python_paths())
        return self.python_paths[1]

    def _basetemp(self) -> list[str]:
        # pytest's basetemp is created lazily: create it on the host now, or the container
        # would make its own. Containers see it read-only (host-side fixtures keep files
        # there); only the test's own tmp_path is writable, see tmp_path_for().
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is None:
            return []
        return [str(factory.getbasetemp())]

    def tmp_path_for(self, item: pytest.Item) -> TmpPath | None:
        """Create on the host the directory the item's ``tmp_path`` would be: the one place
        in basetemp the container may write to (see _use_prepared_tmp_path). Only for
        tests that use temporary directories: making one costs as much as a plain test."""
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is None or not TMP_FIXTURES & set(getattr(item, "fixturenames", ())):
            return None
        # The name pytest's tmp_path fixture gives it (_pytest.tmpdir._mk_tmp).
        basename = re.sub(r"[\W]", "_", item.name)[:30]
        path = str(factory.mktemp(basename, numbered=True))
        used = bool({"tmp_path", "tmpdir"} & set(getattr(item, "fixturenames", ())))
        return TmpPath(basename, path, used)

    def _fds(self) -> frozenset[int]:
        if self.keep_fds is None:
            # once: pytest's own fds do not change. Inside a container (a nested one is
            # being made), pytest's capture is running: only stdio and what it points at.
            nested = self.owner != self.host_pid
            capture = self.config is not None and not nested
            self.keep_fds = pytest_fds(self.config if capture else None)
        return self.keep_fds

    def plan(self, options: Options, item: pytest.Item | None, cwd: str) -> mountplan.Plan:
        rootdir = str(self.config.rootpath) if self.config else os.getcwd()
        if os.path.realpath(rootdir) in self._not_a_project():
            # pytest ran with no ini file from (above) a directory that must stay hidden,
            # such as /tmp or HOME: show the test's own directory, not all of it.
            rootdir = ""
        ro = [*self._python_paths(), *self._basetemp()] + ([rootdir] if rootdir else [])
        if item is not None:  # its directory, when outside the project (one plan per place)
            directory = str(item.path.parent)
            if not rootdir or not mountplan.is_under(directory, rootdir):
                ro.append(directory)
        # writable: absolute, or relative to the project's root ("." is the project)
        writable = tuple(
            os.path.normpath(os.path.join(rootdir or cwd, os.path.expanduser(p)))
            for p in options.writable
        )
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
            plan = rootfs.prepare(plan, tempfile.mkdtemp(dir=self.state_dir, prefix="root-"))
            self.plans[key] = plan
        return plan

    def _not_a_project(self) -> set[str]:
        homes = {self.identity.home, self.identity.account_home}
        return {os.path.realpath(p) for p in ("/", "/tmp", "/var/tmp", "/home", *homes) if p}

    def child_spec(
        self,
        options: Options,
        item: pytest.Item | None,
        rw_binds: tuple[str, ...] = (),
        cgroups: limits_mod.Cgroups | None = None,
    ) -> ChildSpec:
        self._here()
        limits = (
            limits_mod.ProcessLimits.of(self.limits_backend(), options)
            if options.memory or options.pids or options.cpu
            else limits_mod.ProcessLimits()
        )
        cwd = os.getcwd()
        return ChildSpec(
            plan=self.plan(options, item, cwd),
            rw_binds=rw_binds,
            report_writes=self.report_writes and item is not None,
            outer_uid=os.geteuid(),
            outer_gid=os.getegid(),
            root=options.root,
            hostname=options.hostname,
            share_network=options.network == "host",
            env=options.env,
            cwd=cwd,
            timeout=options.timeout,
            keep_fds=self._fds(),
            trace=self.trace,
            last_cap=sc.cap_last_cap(),
            cgroups=cgroups.procs_files if cgroups is not None else (),
            rlimits=limits,
        )


def _host_state(item: pytest.Item, state: SessionState) -> object:
    """What a copy of pytest must have to run ``item`` as a copy made now would: the
    nodes set up on the host and their finalizers (each time a fixture is set up there,
    a parametrized one again included, its node gets one more: FixtureDef.execute), the
    tests pytest ran itself, the fds its test processes keep, and the list of items
    (a request names its item by index; see run_prepared). What the logging hooks change
    on the host is not in it: the session's counts go with each test (see _job_payload)."""
    stack = item.session._setupstate.stack
    nodes = tuple((id(node), len(entry[0])) for node, entry in stack.items())
    items = item.session.items
    return nodes, state.local_runs, state._fds(), id(items), len(items)


_NO_PLAN = mountplan.Plan(ops=(), home="")


def _spec_key(spec: ChildSpec) -> str:
    """Which prepared container ``spec`` asks for. Plans are made once per session and
    never change: the plan by its identity (kept alive in SessionState.plans), the rest
    (a few small fields) by value."""
    rest = dataclasses.replace(spec, plan=_NO_PLAN)
    data = json.dumps(spec_data(rest), sort_keys=True).encode()
    return f"{id(spec.plan):x}-{hashlib.sha256(data).hexdigest()}"


#: Session attributes the host's logging hooks change (pytest's main.Session).
SESSION_COUNTS = ("testsfailed", "shouldstop", "shouldfail")


def _job_payload(
    session: pytest.Session, state: SessionState, job: dict[str, Any], ack_fd: int
) -> Payload:
    """In a prepared container's init (a copy of the zygote): what its test process runs,
    from the host's description of the test."""
    item = session.items[int(job["item"])]
    if item.nodeid != job["nodeid"]:  # the zygote's copy of the session is not pytest's
        raise RuntimeError(f"pytest-rootless: the prepared copy of pytest has no {job['nodeid']}")
    # What the host's logging hooks have changed since the zygote was made: the session's
    # counts (a fixture may skip once a test failed), as a copy made now would hold them.
    for name in SESSION_COUNTS:
        setattr(session, name, job["session"][name])
    tmp = job.get("tmp")
    prepared = TmpPath(str(tmp[0]), str(tmp[1]), bool(tmp[2])) if tmp else None
    options = spec_from_data(job["options"], Options)
    notes = _limit_notes(options, state.limits or limits_mod.detect())
    return functools.partial(_container_protocol, item, prepared, notes, ack_fd)


@dataclass(frozen=True)
class TmpPath:
    """The test's writable directory in basetemp, made on the host before the container."""

    basename: str
    path: str
    statically_used: bool  # tmp_path/tmpdir among the item's fixtures

    def tidy(self, config: pytest.Config, passed: bool) -> None:
        """Remove it if the test left it empty and pytest would not have kept it: never
        asked for, or the retention policy drops the directories of passed tests."""
        policy = config.getini("tmp_path_retention_policy")
        if self.statically_used and not (policy == "failed" and passed):
            return
        self.tidy_unused()

    def tidy_unused(self) -> None:
        try:
            os.rmdir(self.path)  # only if empty
        except OSError:
            pass


#: Fixtures that make temporary directories (pytester's use tmp_path_factory).
TMP_FIXTURES = frozenset({"tmp_path", "tmpdir", "tmp_path_factory", "tmpdir_factory"})


def pytest_fds(config: pytest.Config | None) -> frozenset[int]:
    """The fds pytest itself needs in the container: stdio, the capture files behind them
    and the saved terminal fds (recognised by being the same open file as fd 0-2, with
    capture suspended and resumed). Every other inherited fd gets closed."""
    identities: set[tuple[int, int]] = set()

    def add_stdio() -> None:
        for fd in (0, 1, 2):
            with contextlib.suppress(OSError):
                st = os.fstat(fd)
                identities.add((st.st_dev, st.st_ino))

    add_stdio()
    capman = config.pluginmanager.getplugin("capturemanager") if config is not None else None
    if capman is not None and capman.is_globally_capturing():
        capman.resume_global_capture()
        try:
            add_stdio()
        finally:
            capman.suspend_global_capture()
        capman.suspend_global_capture(in_=True)  # the real stdin, for --pdb
        add_stdio()
        capman.resume_global_capture()
        capman.suspend_global_capture()
    keep = {0, 1, 2}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) in identities:
                keep.add(fd)
    return frozenset(keep)


# --- the host side of one item ---------------------------------------------------------------


def _reraise(item: pytest.Item) -> tuple[type[BaseException], ...]:
    reraise: tuple[type[BaseException], ...] = (pytest.exit.Exception,)
    if not item.config.getoption("usepdb", False):
        reraise += (KeyboardInterrupt,)
    return reraise


class _HostCapture:
    """Capture what host-side setup/teardown prints and logs, as pytest would for the item
    (its capture and logging plugins do it only inside the runtest hooks)."""

    def __init__(self, config: pytest.Config) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        self.capman = capman if capman is not None and capman.is_globally_capturing() else None
        self.logging = config.pluginmanager.getplugin("logging-plugin")
        self.out = self.err = self.log = ""

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._logs():
            if self.capman is None:
                yield
                return
            self.capman.resume_global_capture()
            try:
                yield
            finally:
                self.capman.suspend_global_capture()
                self.out, self.err = self.capman.read_global_capture()

    @contextlib.contextmanager
    def _logs(self) -> Iterator[None]:
        if self.logging is None:
            yield
            return
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(self.logging.formatter)
        root = logging.getLogger()
        level, root_level = self.logging.log_level, root.level
        if level is not None:
            handler.setLevel(level)
            root.setLevel(min(root_level, level))
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(root_level)
            self.log = stream.getvalue().strip()

    def run(self, fn: Callable[[], None]) -> None:
        with self():
            fn()

    def sections(self) -> list[tuple[str, str]]:
        """What the last run captured, as pytest's (key, text) report sections."""
        found = (("stdout", self.out), ("stderr", self.err), ("log", self.log))
        return [(key, text) for key, text in found if text]

    def drain(self) -> tuple[str, str]:
        """What the container wrote into the shared capture files and never collected."""
        if self.capman is None:
            return "", ""
        out, err = self.capman.read_global_capture()
        return out, err


def _host_setup(item: pytest.Item) -> None:
    """Set up the collector chain and every non-function-scoped fixture on the host."""
    setupstate = item.session._setupstate
    # SetupState.setup() only needs listchain() of its argument: the parent's chain.
    setupstate.setup(item.parent)  # type: ignore[arg-type]
    request = getattr(item, "_request", None)
    info = getattr(item, "_fixtureinfo", None)
    if not request or info is None:
        return
    names = [
        name
        for name in getattr(item, "fixturenames", ())
        if (defs := info.name2fixturedefs.get(name)) and defs[-1].scope != "function"
    ]
    if not names:
        return
    # The item must look active while it requests fixtures (pytest >= 9.1 treats requests
    # from an inactive node as teardown-time requests), but its own setup — the
    # function-scoped fixtures — belongs to the container: push it without calling
    # item.setup(), and pop it again before the fork.
    setupstate.stack[item] = ([], None)
    try:
        for name in names:
            request.getfixturevalue(name)
    finally:
        del setupstate.stack[item]


def _hand_timers_to_the_container(item: pytest.Item) -> None:
    """The wrappers of pytest_runtest_protocol that arm a per-test timer ran on the host
    around this protocol, and run again in the container around pytest's own: there
    they time the test itself and dump or fail *its* stack. Stop the host's before the
    fork: pytest-timeout's through its own public hook, and faulthandler's watchdog
    (faulthandler_timeout), whose thread a fork does not copy, so that the container's
    faulthandler would wait forever for it to stop before arming its own."""
    faulthandler.cancel_dump_traceback_later()
    cancel = getattr(item.config.pluginmanager.hook, "pytest_timeout_cancel_timer", None)
    if cancel is not None:
        cancel(item=item)


def _host_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    item.session._setupstate.teardown_exact(nextitem)


def _interact(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    if call.excinfo is None or hasattr(report, "wasxfail"):
        return
    if isinstance(call.excinfo.value, pytest.skip.Exception):
        return
    item.ihook.pytest_exception_interact(node=item, call=call, report=report)


def _report_from(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    return report


def _failure_report(
    item: pytest.Item, when: Phase, text: str, sections: list[tuple[str, str]], duration: float
) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid=item.nodeid,
        location=item.location,
        keywords={name: 1 for name in item.keywords},
        outcome="failed",
        longrepr=text,
        when=when,
        sections=sections,
        duration=duration,
        start=time.time() - duration,
        stop=time.time(),
        user_properties=list(item.user_properties),
    )


#: What TestReport._to_json() holds, plus skipping's "wasxfail"; other keys are extras.
REPORT_FIELDS = frozenset(
    {"$report_type", "nodeid", "location", "keywords", "outcome", "longrepr", "when"}
    | {"sections", "duration", "start", "stop", "user_properties", "wasxfail"}
)


#: The extra key of a report frame holding a longrepr rendered with markup.
MARKUP_KEY = "rootless_longrepr_markup"
#: The extra key of a report frame holding the terminal's current line in the container.
LINE_KEY = "rootless_terminal_line"


@dataclass(frozen=True)
class RenderedRepr:
    """A longrepr that pytest serializes only as text (a doctest failure, a fixture
    lookup error), as the container rendered it: the terminal gets the colours it would
    have had, everything else (junitxml, ``longreprtext``) the plain text. Like the
    original it has no ``reprcrash``, so the short summary shows no message for it."""

    text: str
    markup: str

    def toterminal(self, tw: Any) -> None:
        if tw.hasmarkup:
            tw.write(self.markup)
        else:
            tw.line(self.text)

    def __str__(self) -> str:
        return self.text


#: Attributes pytest and its plugins look for on a report with hasattr/getattr.
DUCK_TYPED = frozenset({"node"})


def _load_report(item: pytest.Item, data: object) -> pytest.TestReport:
    """A report from the container, checked: only data, only this item's phases. Any
    kind of TestReport a plugin serializes (pytest's subtests send SubtestReports)."""
    if not isinstance(data, dict):
        raise framing.ProtocolError("a report frame does not hold a TestReport")
    markup = data.pop(MARKUP_KEY, None)
    if markup is not None and not (
        isinstance(markup, str) and isinstance(data.get("longrepr"), str)
    ):
        raise framing.ProtocolError("a report has a malformed rendered longrepr")
    # Extra keys become instance attributes (TestReport(**extra)): one named like a method
    # or property of the class would replace it, and break the terminal summary later;
    # "node" is what pytest looks for on reports that came from an xdist worker.
    shadowing = [
        key
        for key in data
        if key not in REPORT_FIELDS
        and (key in DUCK_TYPED or key.startswith("__") or hasattr(pytest.TestReport, key))
    ]
    if shadowing:
        raise framing.ProtocolError(f"a report sets reserved attributes: {shadowing!r:.200}")
    if "wasxfail" in data and not isinstance(data["wasxfail"], str):
        raise framing.ProtocolError("a report has a malformed wasxfail")
    try:
        report = item.config.hook.pytest_report_from_serializable(config=item.config, data=data)
    except Exception as exc:
        raise framing.ProtocolError(f"a report could not be read: {exc!r}") from None
    if not isinstance(report, pytest.TestReport):
        raise framing.ProtocolError("a report frame does not hold a TestReport")
    if type(report) is not pytest.TestReport:  # a plugin's subclass: its own attributes too
        shadowing = [key for key in data if key not in REPORT_FIELDS and hasattr(type(report), key)]
        if shadowing:
            raise framing.ProtocolError(f"a report sets reserved attributes: {shadowing!r:.200}")
    if report.when not in PHASES or report.outcome not in ("passed", "failed", "skipped"):
        raise framing.ProtocolError(f"a report has when={report.when!r} outcome={report.outcome!r}")
    if report.nodeid != item.nodeid:
        raise framing.ProtocolError(f"a report names another test: {report.nodeid!r}")
    # Decoded JSON holds a copy of every string: share the item's instead, as pytest's own
    # reports do (pytest keeps every report until the end of the run).
    report.nodeid = item.nodeid
    location = report.location
    if not (
        isinstance(location, list | tuple)
        and len(location) == 3
        and isinstance(location[0], str)
        and isinstance(location[1], int | None)
        and isinstance(location[2], str)
    ):
        raise framing.ProtocolError(f"a report has a malformed location: {location!r:.200}")
    same = tuple(location) == item.location
    report.location = item.location if same else tuple(location)  # type: ignore[assignment]
    sections = report.sections
    if not isinstance(sections, list) or not all(
        isinstance(s, list | tuple) and len(s) == 2 and all(isinstance(x, str) for x in s)
        for s in sections
    ):
        raise framing.ProtocolError("a report has malformed sections")
    report.sections = [(title, text) for title, text in sections]
    if not isinstance(report.duration, int | float) or not isinstance(report.keywords, dict):
        raise framing.ProtocolError("a report has a malformed duration or keywords")
    if report.keywords.keys() <= item.keywords.keys():
        report.keywords = {
            key: report.keywords[key] for key in item.keywords if key in report.keywords
        }
    props = report.user_properties
    if not isinstance(props, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and isinstance(p[0], str) for p in props
    ):
        raise framing.ProtocolError("a report has malformed user_properties")
    report.user_properties = [(name, value) for name, value in props]
    longrepr = report.longrepr
    if isinstance(longrepr, list) and len(longrepr) == 3:
        # A skip's (path, lineno, message): JSON has no tuples, pytest's summary needs one.
        path, lineno, message = longrepr
        if isinstance(path, str) and isinstance(lineno, int | None) and isinstance(message, str):
            report.longrepr = (path, lineno, message)
        else:
            raise framing.ProtocolError(f"a report has a malformed longrepr: {longrepr!r:.200}")
    elif isinstance(longrepr, str) and markup is not None:
        report.longrepr = RenderedRepr(longrepr, markup)  # type: ignore[assignment]
    elif longrepr is not None:
        try:  # render it once now: a malformed one must fail here, not in the summary
            report.longreprtext  # noqa: B018
        except Exception as exc:
            raise framing.ProtocolError(f"a report's longrepr cannot be shown: {exc!r}") from None
    _restore_subtest_kwargs(report, data)
    try:  # a plugin's report may compute it from its own data (a subtest's description)
        report.head_line  # noqa: B018
    except Exception as exc:
        raise framing.ProtocolError(f"a report's head line cannot be shown: {exc!r}") from None
    return report


def _restore_subtest_kwargs(report: pytest.TestReport, data: dict[str, Any]) -> None:
    """pytest's SubtestContext (pytest 9) applies ``saferepr`` to a subtest's parameters
    each time one is made, reading one back from JSON included, so a report that crossed
    a process boundary names ``i='0'`` where the test said ``i=0`` (xdist shows the same).
    Put back the texts the container sent, already repr'd once. Only when the report has
    exactly that shape: anything else is left as pytest made it."""
    context = getattr(report, "context", None)
    sent = data.get("_subtest.context")
    kwargs = sent.get("kwargs") if isinstance(sent, dict) else None
    if (
        dataclasses.is_dataclass(context)
        and isinstance(getattr(context, "kwargs", None), dict)
        and isinstance(kwargs, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in kwargs.items())
    ):
        object.__setattr__(context, "kwargs", dict(kwargs))  # a frozen dataclass


_BUILTIN_WARNINGS = {
    name: obj
    for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, Warning)
}


def _warning_category(name: str, module: str) -> type[Warning]:
    """The category of a warning from the container, by name only (data, not code)."""
    if module == "builtins" and name in _BUILTIN_WARNINGS:
        return _BUILTIN_WARNINGS[name]
    candidate = getattr(pytest, name, None)
    if isinstance(candidate, type) and issubclass(candidate, Warning):
        return candidate
    return type(name, (Warning,), {"__module__": module})


def _follow_terminal_line(terminal: Any, line: object) -> None:
    """What the container wrote through pytest's terminal writer (live logs, --setup-show)
    went to the terminal from its copy of the writer; the host's copy only knows what it
    wrote itself. The writer's idea of the current line decides where the host's next
    word goes and how far the progress ``[ 42%]`` is padded: when the container wrote
    through it, take the container's. (A private attribute of the writer; where it is
    missing the padding may differ.)"""
    if (
        isinstance(line, str)
        and len(line) <= MAX_TERMINAL_LINE
        and isinstance(getattr(terminal, "_current_line", None), str)
    ):
        terminal._current_line = line


#: Longest current terminal line taken from a container.
MAX_TERMINAL_LINE = 64 * 1024


#: Values per junitxml frame (attributes and suite properties each).
MAX_JUNIT_RECORDS = 1000


def _apply_junit(item: pytest.Item, message: framing.Message) -> None:
    """Record on the host what the container's ``record_xml_attribute`` and
    ``record_testsuite_property`` recorded, through the junitxml plugin's own methods;
    before the host logs the teardown report, which writes the test case."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    for key in ("attributes", "properties"):
        value = message.get(key)
        if not (
            isinstance(value, list)
            and len(value) <= MAX_JUNIT_RECORDS
            and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                for p in value
            )
        ):
            raise framing.ProtocolError("a junitxml frame is malformed")
        pairs[key] = [(name, text) for name, text in value]
    xml = junitxml_plugin(item.config)
    if xml is None:
        return
    if pairs["attributes"]:
        reporter = xml.node_reporter(item.nodeid)
        for name, text in pairs["attributes"]:
            reporter.add_attribute(name, text)
    for name, text in pairs["properties"]:
        xml.add_global_property(name, text)


def _reissue_warning(message: framing.Message) -> None:
    """Show a warning of the container's to the host's warning machinery, as it arrives:
    pytest's ``catch_warnings`` for the item (around this protocol, on the host) records
    it in order with the host's own (a module fixture's setup warning comes before the
    test's), then reports each through ``pytest_warning_recorded`` as for any test.
    ``showwarning`` is the step after the filters: the container applied them already
    (an "error" filter raised there)."""
    category = _warning_category(str(message["category"]), str(message["module"]))
    warnings.showwarning(
        category(str(message["message"])),
        category,
        str(message["filename"]),
        int(message["lineno"]),
    )


def _describe_end(outcome: launch.Outcome, options: Options) -> str:
    if outcome.timed_out:
        return f"the container exceeded timeout={options.timeout:g}s and was stopped"
    if outcome.signal is not None:
        try:
            name = signal.Signals(outcome.signal).name
        except ValueError:
            name = f"signal {outcome.signal}"
        return (
            f"the test process was killed by signal {outcome.signal} "
            f"({name}, exit status {128 + outcome.signal})"
        )
    if outcome.status is not None:
        return f"the test process exited with status {outcome.status} before reporting"
    return f"the container's init ended with status {outcome.init_status} before reporting"


#: Warnings kept per container: the host's memory stays bounded whatever a test sends.
MAX_WARNINGS = 1000
#: Reports per test (subtests log one each): past this the container is misbehaving.
MAX_REPORTS = 100_000
MAX_WARNING_TEXT = 64 * 1024


#: Paths kept per test in the writes report (a test can write millions).
MAX_WRITES = 1000


def _checked_writes(message: framing.Message) -> dict[str, str]:
    changes = message.get("changes")
    if not isinstance(changes, dict) or not all(
        isinstance(k, str) and v in CHANGE_KINDS for k, v in changes.items()
    ):
        raise framing.ProtocolError("a writes frame is malformed")
    kept = dict(list(changes.items())[:MAX_WRITES])
    if len(changes) > MAX_WRITES:
        kept[f"... and {len(changes) - MAX_WRITES} more"] = "added"
    return kept


def _checked_warning(message: framing.Message) -> framing.Message:
    fields = ("message", "category", "module", "filename")
    if not all(isinstance(message.get(key), str) for key in fields):
        raise framing.ProtocolError("a warning frame is malformed")
    if not isinstance(message.get("lineno"), int):
        raise framing.ProtocolError("a warning frame is malformed")
    if not message["category"].isidentifier():
        raise framing.ProtocolError("a warning category is not a name")
    return {key: message[key][:MAX_WARNING_TEXT] for key in fields} | {"lineno": message["lineno"]}


@dataclass
class _Received:
    reports: dict[str, pytest.TestReport] = field(default_factory=dict)
    count: int = 0  # reports, subtests' included
    warnings: int = 0
    exit_request: framing.Message | None = None
    interrupted: bool = False
    protocol_error: str | None = None


def run_item(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    options: Options,
    state: SessionState,
    next_options: Options | None = None,
) -> None:
    """pytest's runtest protocol for ``item``, with the item's own phases in a container."""
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reraise = _reraise(item)
    capture = _HostCapture(item.config)

    setup_call = pytest.CallInfo.from_call(
        lambda: capture.run(lambda: _host_setup(item)), "setup", reraise=reraise
    )
    for key, text in capture.sections():
        item.add_report_section("setup", key, text)
    received = _Received()
    if setup_call.excinfo is not None:
        report = _report_from(item, setup_call)
        ihook.pytest_runtest_logreport(report=report)
        _interact(item, setup_call, report)
    else:
        _hand_timers_to_the_container(item)
        ahead = (nextitem, next_options) if nextitem is not None and next_options else None
        _run_in_container(item, options, state, received, capture, setup_call.duration, ahead)

    if received.exit_request is not None:
        message = received.exit_request
        code = message.get("returncode")
        raise pytest.exit.Exception(
            str(message.get("reason")), code if isinstance(code, int) else None
        )
    if received.interrupted:
        raise KeyboardInterrupt

    # === teardown: the container's (function scope) merged with the host's (higher) ===
    if TEARDOWN_ALL_ON_STOP and (item.session.shouldfail or item.session.shouldstop):
        nextitem = None
    teardown_call = pytest.CallInfo.from_call(
        lambda: capture.run(lambda: _host_teardown(item, nextitem)), "teardown", reraise=reraise
    )
    report = _merge_teardown(item, received.reports.get("teardown"), teardown_call)
    for key, text in capture.sections():
        _append_section(report, f"Captured {key} teardown", text)
    ihook.pytest_runtest_logreport(report=report)
    if teardown_call.excinfo is not None:
        _interact(item, teardown_call, report)
    if received.warnings > MAX_WARNINGS:
        _reissue_warning(
            {
                "message": f"pytest-rootless kept the first {MAX_WARNINGS} warnings of this "
                f"test and dropped {received.warnings - MAX_WARNINGS} more",
                "category": "PytestWarning",
                "module": "pytest",
                "filename": str(item.path),
                "lineno": (item.location[1] or 0) + 1,
            }
        )
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


#: pytest 8.3 and later tear everything down with the test after which the session stops
#: (-x, --maxfail), so that a fixture's teardown error is reported with it (pytest #11706);
#: earlier ones at the session's end, outside any test.
TEARDOWN_ALL_ON_STOP = pytest.version_tuple[:2] >= (8, 3)


def _merge_teardown(
    item: pytest.Item, inner: pytest.TestReport | None, host_call: pytest.CallInfo[None]
) -> pytest.TestReport:
    """One teardown report from two halves, as pytest makes one: the container's
    (function scope) and the host's (higher scopes). Neither half's error or output is
    dropped."""
    if host_call.excinfo is None:
        if inner is None:
            return _report_from(item, host_call)
        inner.duration += host_call.duration
        return inner
    host = _report_from(item, host_call)
    if inner is None:
        return host
    # The container's report holds the sections, properties and time of the test; the
    # host adds its error (and its time).
    inner.duration += host_call.duration
    if not inner.failed:
        inner.outcome = "failed"
        inner.longrepr = host.longrepr
        return inner
    inner.sections.append(
        ("rootless: the host's teardown of higher-scoped fixtures failed too", host.longreprtext)
    )
    return inner


def _append_section(report: pytest.TestReport, title: str, text: str) -> None:
    for index, (name, content) in enumerate(report.sections):
        if name == title:
            report.sections[index] = (name, content + text)
            return
    report.sections.append((title, text))


def _run_in_container(
    item: pytest.Item,
    options: Options,
    state: SessionState,
    received: _Received,
    capture: _HostCapture,
    host_setup_duration: float,
    ahead: tuple[pytest.Item, Options] | None = None,
) -> None:
    ihook = item.ihook
    writer = item.config.pluginmanager.getplugin("terminalreporter")
    terminal = item.config.get_terminal_writer()

    def on_message(message: framing.Message) -> None:
        if received.protocol_error is not None:
            return
        try:
            handle(message)
        except Exception as exc:  # the container is not trusted: any bad frame ends it
            received.protocol_error = (
                str(exc)
                if isinstance(exc, framing.ProtocolError)
                else f"{exc!r} on {message!r:.200}"
            )
            raise framing.ProtocolError(received.protocol_error) from None

    ack_w = -1  # the host's end of the container's ack pipe, once it exists

    def log_report(message: framing.Message) -> None:
        received.count += 1
        if received.count > MAX_REPORTS:
            raise framing.ProtocolError(f"more than {MAX_REPORTS} reports arrived")
        data = message.get("data")
        line = data.pop(LINE_KEY, None) if isinstance(data, dict) else None
        report = _load_report(item, data)
        _follow_terminal_line(terminal, line)
        if type(report) is not pytest.TestReport:
            # One of a plugin's own (a subtest's): logged in the middle of a phase.
            ihook.pytest_runtest_logreport(report=report)
            terminal.flush()
            return
        if report.when in received.reports:
            raise framing.ProtocolError(f"a second {report.when} report arrived")
        received.reports[report.when] = report
        if report.when == "setup":  # the host's half of setup counts too
            report.duration += host_setup_duration
        if report.when != "teardown":  # held: merged with the host's teardown
            ihook.pytest_runtest_logreport(report=report)
            terminal.flush()  # before the container writes more (-s, log_cli)

    def handle(message: framing.Message) -> None:
        kind = message["kind"]
        if kind == "report":
            log_report(message)
            os.write(ack_w, b"\0")  # logged: the test process goes on
        elif kind == "warning":
            warning = _checked_warning(message)
            received.warnings += 1
            if received.warnings <= MAX_WARNINGS:
                _reissue_warning(warning)
        elif kind == "junitxml":
            _apply_junit(item, message)
        elif kind == "cache":
            _apply_cache(item.config, message)
        elif kind == "coverage":
            COVERAGE.add(message)
        elif kind == "session-stop":
            name, reason = message.get("attribute"), message.get("reason")
            if name not in ("shouldstop", "shouldfail") or not isinstance(reason, str):
                raise framing.ProtocolError("a session-stop frame is malformed")
            if not getattr(item.session, name):
                setattr(item.session, name, reason[:MAX_WARNING_TEXT] or True)
        elif kind == "session-exit":
            received.exit_request = message
        elif kind == "interrupt":
            received.interrupted = True
        elif kind == "trace" and writer is not None:
            _print_trace(writer, item, message)
        elif kind == "writes" and state.report_writes:
            state.writes[item.nodeid] = _checked_writes(message)

    started = time.monotonic()
    try:
        cgroups = state.cgroups_for(options)
    except limits_mod.CgroupError as exc:
        text = f"rootless: {exc.strerror}"
        received.reports["setup"] = report = _failure_report(item, "setup", text, [], 0.0)
        ihook.pytest_runtest_logreport(report=report)
        return
    prepared = state.tmp_ahead.pop(item.nodeid, None) or state.tmp_path_for(item)
    spec = state.child_spec(
        options, item, rw_binds=(prepared.path,) if prepared else (), cgroups=cgroups
    )
    _forwarding()  # made here, once, rather than in every test process
    # The host's answer to each report: it has been logged (see _Forwarder).
    ack_r, ack_w = os.pipe2(os.O_CLOEXEC)
    if state.trace and writer is not None:
        libc.set_tracing(True)
    try:
        notes = _limit_notes(options, state.limits_backend())
        outcome = None
        index = state.index_of(item)
        if cgroups is None and index is not None and state.preparing(options):
            job = {
                "item": index,
                "nodeid": item.nodeid,
                "session": {name: getattr(item.session, name) for name in SESSION_COUNTS},
                "tmp": dataclasses.astuple(prepared) if prepared else None,
                "options": spec_data(options),
            }
            outcome = state.run_prepared(item, spec, job, ack_r, on_message, ahead)
        if outcome is None:
            spec = dataclasses.replace(spec, keep_fds=spec.keep_fds | {ack_r})
            payload = functools.partial(_container_protocol, item, prepared, notes, ack_r)
            outcome = state.run_container(spec, payload, on_message, cgroups)
    finally:
        os.close(ack_r)
        os.close(ack_w)
        if state.trace and writer is not None:
            libc.set_tracing(False)
    hits = cgroups.hits() if cgroups is not None else {}
    limit_lines = (
        limits_mod.explain(options, state.limits_backend(), hits, signum=outcome.signal)
        if options.memory or options.pids or options.cpu
        else []
    )
    received.protocol_error = received.protocol_error or outcome.protocol_error
    out, err = capture.drain()
    if prepared is not None:
        call = received.reports.get("call")
        prepared.tidy(item.config, passed=call is not None and call.passed)
    if received.exit_request is not None or received.interrupted:
        return
    _report_missing(
        item, options, outcome, received, (out, err), time.monotonic() - started, limit_lines
    )
    # A limit hit that did not end the test process (a child was OOM-killed, a fork
    # refused) but made it fail: say so under the failure.
    call = received.reports.get("call")
    if limit_lines and call is not None and call.failed:
        # What the kernel counted replaces what the test process could guess.
        call.sections = [s for s in call.sections if s[0] != LIMIT_SECTION]
        call.sections.append((LIMIT_SECTION, "\n".join(f"{line}." for line in limit_lines)))


def _report_missing(
    item: pytest.Item,
    options: Options,
    outcome: launch.Outcome,
    received: _Received,
    output: tuple[str, str],
    elapsed: float,
    limit_lines: list[str],
) -> None:
    """If the container ended badly or before sending every report, fail the phase it
    was in. A failed teardown is stored, not logged: run_item merges it with the host's."""
    expected: list[Phase] = ["setup"]
    setup = received.reports.get("setup")
    if setup is None or (setup.passed and not item.config.getoption("setuponly", False)):
        expected.append("call")
    expected.append("teardown")
    missing = [when for when in expected if when not in received.reports]
    ended_badly = outcome.status != 0 or outcome.timed_out
    if (
        received.protocol_error is None
        and outcome.setup_error is None
        and not missing
        and not ended_badly
    ):
        return
    # Everything arrived, then the container misbehaved: fail the teardown.
    when = missing[0] if missing else "teardown"
    lines = [f"rootless: {_describe_end(outcome, options)} during {when}."]
    lines += [f"rootless: {line}." for line in limit_lines]
    limit_lines.clear()  # said here: not again under the call's report
    if received.protocol_error is not None:
        lines = [
            f"rootless: the container sent malformed data during {when}: {received.protocol_error}"
        ]
    if outcome.setup_error is not None:
        err = outcome.setup_error
        if err.get("stage") == "test":
            lines = [f"rootless: pytest-rootless failed in the test process: {err.get('message')}"]
        else:
            lines = [f"rootless: the container could not be built: {err.get('message')}"]
        trace = err.get("trace")
        if isinstance(trace, list) and trace:
            lines += ["", "steps taken (the last one failed):"]
            lines += [f"  {line}" for line in trace]
        tb = err.get("traceback")
        if isinstance(tb, str) and tb:
            lines += ["", tb.rstrip()]
    if outcome.crash_text.strip():
        title = (
            "stack of every thread at the timeout"
            if outcome.timed_out
            else "Python traceback (faulthandler)"
        )
        lines += ["", f"{title}:", outcome.crash_text.rstrip()]
    sections = [
        (f"Captured {key} {when}", text)
        for key, text in zip(("stdout", "stderr"), output, strict=True)
        if text
    ]
    report = _failure_report(item, when, "\n".join(lines), sections, elapsed)
    received.reports[when] = report
    if when != "teardown":
        item.ihook.pytest_runtest_logreport(report=report)


def _print_trace(writer: Any, item: pytest.Item, message: framing.Message) -> None:
    """One line per kernel step, in order (the host's clone, then init's steps, then the
    test process's), each stage under a one-line heading saying what its steps build."""
    lines = message.get("lines")
    if not isinstance(lines, list):
        return
    stage = str(message.get("stage"))
    steps = [(stage, str(line)) for line in lines]
    if stage == "init":
        writer.ensure_newline()
        writer.write_line(f"rootless trace {item.nodeid}:")
        steps = [("host", line) for line in libc.TRACE] + steps  # the clone(2) made by the host
    joins = " joins its cgroups," if any("cgroup.procs" in line for _, line in steps) else ""
    headings = {
        "user": f"user namespace (user_namespaces(7)): init, PID 1 of new namespaces,{joins} "
        "maps your ids",
        "root": "root filesystem (mount_namespaces(7)): a tmpfs, read-only binds, pivot_root(2)",
        "inner": "inner namespaces (namespaces(7)): user, mount (locked), UTS, IPC, net; "
        "hostname, lo",
        "test": "test process (capabilities(7), seccomp(2)): PID 2 drops privileges, runs the test",
    }
    mounting = ("mount", "mount_setattr", "fsopen", "fsconfig", "fsmount", "move_mount")
    group = "test" if stage == "test" else "user" if stage == "init" else stage
    shown = None
    for who, line in steps:
        call = line.partition("(")[0]
        if who == "init" and call == "unshare":
            group = "inner"
        elif who == "init" and group == "user" and call in mounting:
            group = "root"
        if group != shown:
            writer.write_line(f"  # {headings.get(group, group)}")
            shown = group
        writer.write_line(f"  [{who}] {line}")


# --- the container side of one item (runs in the test process, after isolation) -------------

#: Captured output kept per report section; a frame must stay under framing.MAX_FRAME.
MAX_SECTION = 8 * 1024 * 1024


def _fit(data: dict[str, Any]) -> dict[str, Any]:
    """Cut very long captured sections in the middle, saying so, so the report still fits
    in one frame (a plain pytest run would hold all of it in memory too)."""
    sections = data.get("sections")
    if isinstance(sections, list):
        # The host's half of setup captured into its own section: one section per
        # title, as a single capture window would give.
        merged: dict[str, str] = {}
        for title, text in sections:
            merged[title] = merged.get(title, "") + text
        fitted = []
        for title, text in merged.items():
            if isinstance(text, str) and len(text) > MAX_SECTION:
                half = MAX_SECTION // 2
                cut = len(text) - 2 * half
                text = (
                    f"{text[:half]}\n[... {cut} characters cut by pytest-rootless ...]\n"
                    f"{text[-half:]}"
                )
            fitted.append((title, text))
        data["sections"] = fitted
    return data


def _rendered_with_markup(config: pytest.Config, report: pytest.TestReport) -> str | None:
    """A longrepr pytest serializes only as its plain text (one that is not a traceback:
    a doctest failure, a fixture lookup error) rendered here as a terminal with colours
    would show it (see RenderedRepr)."""
    longrepr = report.longrepr
    if not hasattr(longrepr, "toterminal") or (
        hasattr(longrepr, "reprtraceback") and hasattr(longrepr, "reprcrash")
    ):
        return None
    terminal = config.get_terminal_writer()
    buffer = io.StringIO()
    writer = type(terminal)(file=buffer)
    writer.hasmarkup = True
    writer.fullwidth = terminal.fullwidth
    writer.code_highlight = terminal.code_highlight
    longrepr.toterminal(writer)  # type: ignore[union-attr]
    return buffer.getvalue()


def _finalizer_counts(item: pytest.Item) -> dict[object, int]:
    """How many finalizers each set-up node holds (taken before the container's setup)."""
    return {node: len(entry[0]) for node, entry in item.session._setupstate.stack.items()}


def _tear_down_what_the_container_added(item: pytest.Item, inherited: dict[object, int]) -> None:
    """A higher-scoped fixture first requested here (``request.getfixturevalue``) is set up
    in the container and registers its finalizer on a higher node, which the container
    never tears down: run such finalizers with the item's own teardown, after its
    function-scoped fixtures (the item's first finalizer runs last)."""
    stack = item.session._setupstate.stack
    if item not in stack:
        return

    def finish() -> None:
        errors: list[BaseException] = []
        for node, known in inherited.items():
            finalizers = stack[node][0] if node in stack else []
            while len(finalizers) > known:
                try:
                    finalizers.pop()()
                except Exception as exc:
                    errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup("errors while tearing down higher-scoped fixtures", errors)

    stack[item][0].insert(1, finish)


def _use_prepared_tmp_path(config: pytest.Config, prepared: TmpPath | None) -> None:
    """In the container only the directory made on the host for this test is writable in
    basetemp. The tmp_path fixture gets it; any other ``tmp_path_factory.mktemp`` (a
    function fixture's, pytester's) gets a directory inside it, so it too stays on the
    host, under this test's directory."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return
    if prepared is None:

        def no_mktemp(basename: str, numbered: bool = True) -> Any:
            raise RuntimeError(
                "pytest-rootless: a temporary directory was asked for with "
                "request.getfixturevalue(); request tmp_path (or tmp_path_factory) as a "
                "fixture argument, so that it is made writable for this isolated test"
            )

        factory.mktemp = no_mktemp
        return
    root = type(factory.getbasetemp())(prepared.path)
    unused = [root]

    def container_mktemp(basename: str, numbered: bool = True) -> Any:
        if os.path.isabs(basename) or os.path.normpath(basename) != basename:
            raise ValueError(f"{basename} is not a normalized and relative path")
        if numbered and basename == prepared.basename and unused:
            return unused.pop()
        for number in range(10_000) if numbered else [None]:
            path = root / (basename if number is None else f"{basename}{number}")
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                continue
            return path
        raise OSError(f"could not create a directory for {basename!r} in {root}")

    factory.mktemp = container_mktemp


class _LogHookSpecs:
    """The hooks that *log* a test (pytest's hookspec.py): in the container they are
    forwarded to the host, which calls the real ones, so that every plugin (terminal,
    junitxml, xdist's worker, the session's -x/--maxfail count) sees each report once,
    on the host, in order."""

    @_HOOKSPEC
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None: ...

    @_HOOKSPEC
    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None: ...

    @_HOOKSPEC
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None: ...

    @_HOOKSPEC(historic=True)
    def pytest_warning_recorded(
        self, warning_message: warnings.WarningMessage, when: str, nodeid: str, location: Any
    ) -> None: ...


class _Forwarder:
    """In the container, the only implementation of the logging hooks: each report and
    each warning goes up as a frame the moment pytest logs it (subtests and unittest's
    subTest log reports in the middle of the call, too); the start and the finish are
    the host's.

    After each report the test process waits until the host has logged it: what the
    host prints for it (``PASSED``, a live-log or ``-s`` line's end) comes before what
    the test prints next, as in one process."""

    def attach(
        self, item: pytest.Item, send: Callable[[framing.Message], None], ack_fd: int
    ) -> None:
        """Forward for ``item``, in its test process."""
        self.item = item
        self.config = item.config
        self.send = send
        self.ack_fd = ack_fd
        self.inherited = _finalizer_counts(item)
        self.line = _terminal_line(self.config)
        self.lock = threading.Lock()
        self.stopped: set[str] = set()

    @_HOOKIMPL
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        config = self.config
        # A report's final status can depend on state of the test process (pytest's
        # subtests fail a passed test that "contains failed subtests" here, from a count
        # kept in this process): let the hook settle it before the report leaves.
        config.hook.pytest_report_teststatus(report=report, config=config)
        data = config.hook.pytest_report_to_serializable(config=config, report=report)
        markup = _rendered_with_markup(config, report)
        if markup is not None:
            data[MARKUP_KEY] = markup
        with self.lock:  # one report at a time, even from the test's threads
            line = _terminal_line(config)
            if line != self.line:  # the test process wrote through the terminal writer
                data[LINE_KEY] = self.line = line
            for stream in (sys.stdout, sys.stderr):  # what the test printed (-s) first
                stream.flush()
            self.send({"kind": "report", "data": _fit(data)})
            if not os.read(self.ack_fd, 1):
                raise RuntimeError("pytest-rootless: the host closed the container's channel")
        if report.when == "setup" and type(report) is pytest.TestReport:
            _tear_down_what_the_container_added(self.item, self.inherited)
        self._stop_the_session_on_the_host()

    def _stop_the_session_on_the_host(self) -> None:
        """A test that stops the session (``session.shouldstop``/``shouldfail``) stops the
        host's. pytest's protocol then tears every scope down with the test (8.3+): here
        the higher scopes' finalizers inherited from the host are dropped first, as
        their teardown is the host's (the ones the test added stay, see
        _tear_down_what_the_container_added)."""
        session = self.item.session
        for name in ("shouldstop", "shouldfail"):
            value = getattr(session, name)
            if value and name not in self.stopped:
                self.stopped.add(name)
                reason = value if isinstance(value, str) else ""
                self.send({"kind": "session-stop", "attribute": name, "reason": reason})
                stack = session._setupstate.stack
                for node, known in self.inherited.items():
                    if node is not self.item and node in stack:
                        del stack[node][0][:known]
                        self.inherited[node] = 0

    @_HOOKIMPL
    def pytest_warning_recorded(
        self, warning_message: warnings.WarningMessage, when: str, nodeid: str, location: Any
    ) -> None:
        category = warning_message.category
        self.send(
            {
                "kind": "warning",
                "message": str(warning_message.message),
                "category": category.__name__,
                "module": category.__module__,
                "filename": str(warning_message.filename),
                "lineno": int(warning_message.lineno or 0),
            }
        )


def _terminal_line(config: pytest.Config) -> str | None:
    """The terminal writer's current line (see _follow_terminal_line)."""
    line = getattr(config.get_terminal_writer(), "_current_line", None)
    return line if isinstance(line, str) else None


def _forward_log_hooks(
    item: pytest.Item, send: Callable[[framing.Message], None], ack_fd: int
) -> None:
    """Replace, in this process only, the callers of the logging hooks by ones whose only
    implementation is a :class:`_Forwarder`. Made by a PluginManager of their own (public
    pluggy API); set on the hook relay the way pluggy fills it, so item.ihook and its
    per-directory subsets (FSHookProxy) resolve to them too."""
    config = item.config
    manager, forwarder = _forwarding()
    forwarder.attach(item, send, ack_fd)
    relays = {id(relay): relay for relay in (config.pluginmanager.hook, config.hook)}
    for name in vars(_LogHookSpecs):
        if name.startswith("pytest_"):
            for relay in relays.values():
                setattr(relay, name, getattr(manager.hook, name))


_FORWARDING: list[tuple[pluggy.PluginManager, _Forwarder]] = []


def _forwarding() -> tuple[pluggy.PluginManager, _Forwarder]:
    """The forwarding hooks, made once on the host (every test process inherits them)."""
    if not _FORWARDING:
        manager = pluggy.PluginManager("pytest")
        manager.add_hookspecs(_LogHookSpecs)
        forwarder = _Forwarder()
        manager.register(forwarder)
        _FORWARDING.append((manager, forwarder))
    return _FORWARDING[0]


def junitxml_plugin(config: pytest.Config) -> Any:
    """pytest's junitxml plugin object when ``--junitxml`` is on, else None. pytest keeps
    it under a private stash key; it is found here by what it does."""
    for plugin in config.pluginmanager.get_plugins():
        if callable(getattr(plugin, "add_global_property", None)) and callable(
            getattr(plugin, "node_reporter", None)
        ):
            return plugin
    return None


class _CacheWrites:
    """``config.cache`` in the test process: its directory is on the host, read-only in
    here. Values a test (or a plugin in it) sets are kept, read back by ``get`` in this
    process, and sent up at the end: the host sets them in the real cache. (Cache values
    are JSON by pytest's contract; ``mkdir`` still gives the host's directory.)"""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.values: dict[str, object] = {}
        self.get = cache.get

    @classmethod
    def install(cls, config: pytest.Config) -> _CacheWrites | None:
        cache = getattr(config, "cache", None)
        if cache is None:  # -p no:cacheprovider
            return None
        writes = cls(cache)
        cache.set = writes.set_value  # this process's copy of the object only
        cache.get = writes.get_value
        return writes

    def set_value(self, key: str, value: object) -> None:
        __tracebackhide__ = True
        json.dumps(value, ensure_ascii=False, indent=2)  # as the real set: its error, here
        self.values[key] = value

    def get_value(self, key: str, default: object) -> object:
        if key in self.values:
            return self.values[key]
        return self.get(key, default)

    def message(self) -> framing.Message | None:
        return {"kind": "cache", "values": self.values} if self.values else None


#: Values a container may set in pytest's cache per test.
MAX_CACHE_VALUES = 1000


def _apply_cache(config: pytest.Config, message: framing.Message) -> None:
    values = message.get("values")
    if not (
        isinstance(values, dict)
        and len(values) <= MAX_CACHE_VALUES
        and all(isinstance(key, str) for key in values)
    ):
        raise framing.ProtocolError("a cache frame is malformed")
    cache: Any = getattr(config, "cache", None)
    for key, value in values.items() if cache is not None else ():
        cache.set(key, value)


class _JunitRecords:
    """What ``record_xml_attribute`` and ``record_testsuite_property`` record in the
    container: they change the junitxml plugin's objects (its node reporter's ``attrs``,
    its ``global_properties``), which here are the test process's copies. Read back
    after the test and sent up; the host records them on its own (see _apply_junit)."""

    def __init__(self, config: pytest.Config) -> None:
        self.xml = junitxml_plugin(config)
        properties = getattr(self.xml, "global_properties", None)
        self.known = len(properties) if isinstance(properties, list) else 0

    def recorded(self, nodeid: str) -> framing.Message | None:
        if self.xml is None:
            return None
        properties = getattr(self.xml, "global_properties", None)
        added = list(properties[self.known :]) if isinstance(properties, list) else []
        attributes: dict[str, object] = {}
        reporters = getattr(self.xml, "node_reporters", None)
        for key, reporter in reporters.items() if isinstance(reporters, dict) else ():
            # (node id, xdist worker); pytest 9.2 keys by a NodeId whose str() is the id
            if isinstance(key, tuple) and key and str(key[0]) == nodeid:
                attributes.update(getattr(reporter, "attrs", {}))
        if not added and not attributes:
            return None
        return {
            "kind": "junitxml",
            "attributes": [[str(k), str(v)] for k, v in attributes.items()],
            "properties": [[str(k), str(v)] for k, v in added],
        }


def _limit_notes(options: Options, backend: limits_mod.Backend) -> Callable[..., list[str]] | None:
    """What names the limit a test's exception comes from; None if it has no limits."""
    if options.memory is None and options.pids is None and options.cpu is None:
        return None
    return functools.partial(limits_mod.explain, options, backend, {})


class _LimitNotes:
    """In the test process: a failure caused by a limit (a refused fork, the OOM killer's
    work) says which, in a section of its report."""

    def __init__(self, limit_notes: Callable[..., list[str]]) -> None:
        self.limit_notes = limit_notes

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.excinfo is not None and report.failed:
            lines = self.limit_notes(exception=call.excinfo.value)
            if lines:
                report.sections.append((LIMIT_SECTION, "\n".join(f"{line}." for line in lines)))
        return report


#: coverage.py's [run] options that the measurement in a test process takes from pytest's.
COVERAGE_OPTIONS = (
    "run:branch",
    "run:concurrency",
    "run:context",
    "run:core",
    "run:cover_pylib",
    "run:disable_warnings",
    "run:include",
    "run:omit",
    "run:plugins",
    "run:relative_files",
    "run:source",
    "run:source_dirs",
    "run:source_pkgs",
    "run:timid",
)
#: Warnings of coverage.py about what one test process did not see (the host's Coverage
#: warns about the session as a whole).
COVERAGE_QUIET = ("no-data-collected", "module-not-imported", "module-not-measured")


class ContainerCoverage:
    """coverage.py in a test process, when it measures pytest (``pytest --cov``,
    ``coverage run -m pytest``): the process is a fork that leaves through ``os._exit``,
    so the measurement it inherited would never be saved (no atexit), and the data file
    it would write is on the host, read-only in here. It measures the test with a
    Coverage of its own, same [run] options, in memory (``data_file=None``), and sends
    the lines or arcs up as data: the host writes them where coverage.py combines them
    (see CoverageSink). Only public coverage.py API."""

    #: The Coverage measuring this test process, if one.
    active: Any = None

    def __init__(self, coverage: Any) -> None:
        self.coverage = ContainerCoverage.active = coverage

    @classmethod
    def start(cls) -> ContainerCoverage | None:
        module = sys.modules.get("coverage")
        current = getattr(getattr(module, "Coverage", None), "current", None)
        inherited = current() if callable(current) else None
        if module is None or inherited is None:
            return None
        options = {}
        for name in COVERAGE_OPTIONS:
            try:
                options[name] = inherited.get_option(name)
            except Exception:  # an option this coverage.py does not have
                continue
        inherited.stop()  # this process's copy of pytest's measurement, never saved
        own = module.Coverage(data_file=None, config_file=False)
        for name, value in options.items():
            own.set_option(name, value)
        quiet = list(options.get("run:disable_warnings") or [])
        own.set_option("run:disable_warnings", [*quiet, *COVERAGE_QUIET])
        own.start()
        # Who switches the dynamic context of pytest's measurement (pytest-cov's
        # --cov-context=test, in the runtest hooks that now run here) switches ours.
        inherited.switch_context = own.switch_context
        return cls(own)

    def finish(self) -> framing.Message | None:
        self.coverage.stop()
        data = self.coverage.get_data()
        arcs = data.has_arcs()
        contexts: dict[str, dict[str, list[Any]]] = {}
        for context in sorted(data.measured_contexts()):
            data.set_query_context(context)
            files = {
                path: sorted(data.arcs(path) or []) if arcs else sorted(data.lines(path) or [])
                for path in data.measured_files()
            }
            contexts[context] = {path: found for path, found in files.items() if found}
        if not any(contexts.values()):
            return None
        return {"kind": "coverage", "arcs": arcs, "contexts": contexts}


#: Set in the container's copy of the item: its pytest_runtest_protocol is pytest's own.
INSIDE_KEY = pytest.StashKey[bool]()


def _container_protocol(
    item: pytest.Item,
    prepared_tmp: TmpPath | None,
    limit_notes: Callable[..., list[str]] | None,
    ack_fd: int,
    result_fd: int,
) -> int:
    """pytest's own runtest protocol for one item (``pytest_runtest_protocol``, with every
    plugin's wrapper: warnings, faulthandler, assertion, unittest, timeouts), the
    logging hooks forwarded to the host instead (see :class:`_Forwarder`).
    ``limit_notes(exception=...)`` names the limit an exception comes from, if one (None:
    the test has no limits)."""
    config = item.config
    measuring = ContainerCoverage.start()
    _use_prepared_tmp_path(config, prepared_tmp)
    send = functools.partial(framing.send, result_fd)
    _forward_log_hooks(item, send, ack_fd)
    if limit_notes is not None:  # registering a plugin costs a test process ~1 ms
        config.pluginmanager.register(_LimitNotes(limit_notes), "rootless-limits")
    item.stash[INSIDE_KEY] = True
    junit = _JunitRecords(config)
    cache = _CacheWrites.install(config)
    try:
        # Tear down the item only: the next node that stays set up is its parent; the
        # host tears down higher scopes.
        item.ihook.pytest_runtest_protocol(item=item, nextitem=item.parent)
    except pytest.exit.Exception as exc:
        send({"kind": "session-exit", "reason": exc.msg, "returncode": exc.returncode})
    except KeyboardInterrupt:
        send({"kind": "interrupt"})
    cached = cache.message() if cache is not None else None
    for message in (junit.recorded(item.nodeid), cached, measuring and measuring.finish()):
        if message:
            send(message)
    # Everything is sent; the host ends the container when it reads this, so what is
    # still buffered for the terminal (-s) goes out first.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    send({"kind": "done", "status": 0})
    return 0


def fail_without_running(item: pytest.Item, text: str) -> None:
    """Report ``item`` as an error in setup without running any of it."""
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    ihook.pytest_runtest_logreport(report=_failure_report(item, "setup", text, [], 0.0))
    teardown = pytest.CallInfo.from_call(lambda: None, "teardown")
    ihook.pytest_runtest_logreport(report=_report_from(item, teardown))
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
