"""The plugin's state for one pytest session: the containers' shared parts
(:class:`~pytest_rootless.runtime.session.ContainerSession`), the zygote keeper, what each
test wrote (``--rootless-report-writes``), the counts the summary shows, and what only
pytest knows: which paths a test's container shows, its ``tmp_path``, pytest's own fds."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field

import pytest

from ..kernel.paths import is_under
from ..runtime import limits
from ..runtime.options import Options
from ..runtime.session import ContainerSession, stdio_fds, visible_paths
from ..runtime.spec import ContainerSpec
from .coverage import COVERAGE
from .prepared import ZygoteKeeper
from .shared import TMP_FIXTURES, TmpPath
from .stats import Stats


@dataclass
class SessionState:
    """Per-session facts computed once. ``config`` is None outside pytest
    (``run_isolated``)."""

    config: pytest.Config | None
    containers: ContainerSession = field(default_factory=ContainerSession)
    report_writes: bool = False  # --rootless-report-writes
    #: What each isolated test wrote outside /tmp, HOME and tmp_path, by node id.
    writes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Prepare containers ahead of their tests (off: --rootless-no-prepare).
    prepare: bool = True
    unsupported: int = 0
    isolated: int = 0
    #: What the containers cost (--rootless-stats).
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self.containers.fds = self._fds
        self.keeper = ZygoteKeeper(
            self.containers,
            self.prepare and self.config is not None,
            self.tmp_path_for,
            lambda options, item, rw_binds: self.spec(options, item, rw_binds),
            self.stats,
        )

    @property
    def trace(self) -> bool:
        return self.containers.trace

    def close(self) -> None:
        if self.containers.owner != os.getpid():
            return  # a copy inherited by a container: the host owns all of it
        COVERAGE.flush()
        self.keeper.close()
        self.containers.close()

    def _fds(self) -> frozenset[int]:
        # Inside a container (a nested one is being made), pytest's capture is running:
        # only stdio and what it points at.
        capture = self.config is not None and not self.containers.nested
        return pytest_fds(self.config if capture else None)

    def _basetemp(self) -> list[str]:
        # pytest's basetemp is created lazily: create it on the host now, or the container
        # would make its own. Containers see it (host-side fixtures keep files there); a
        # test with a tmp_path gets it copy-on-write, its tmp_path bound on top, see spec().
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is None:
            return []
        return [str(factory.getbasetemp())]

    def tmp_path_for(self, item: pytest.Item) -> TmpPath | None:
        """Create on the host the directory the item's ``tmp_path`` would be: the one place
        in basetemp the container may write to (see _use_host_tmp_path). Only for
        tests that use temporary directories: making one costs as much as a plain test."""
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is None or not TMP_FIXTURES & set(getattr(item, "fixturenames", ())):
            return None
        # The name pytest's tmp_path fixture gives it (_pytest.tmpdir._mk_tmp).
        basename = re.sub(r"[\W]", "_", item.name)[:30]
        path = str(factory.mktemp(basename, numbered=True))
        used = bool({"tmp_path", "tmpdir"} & set(getattr(item, "fixturenames", ())))
        return TmpPath(basename, path, used)

    def spec(
        self,
        options: Options,
        item: pytest.Item | None,
        rw_binds: tuple[str, ...] = (),
        cgroups: limits.Cgroups | None = None,
    ) -> ContainerSpec:
        """The spec of a container of ``options`` for ``item`` (None: a live container):
        it shows Python, pytest's basetemp, the project and the test's own directory.

        A test with a ``tmp_path`` (``rw_binds``: it, made on the host) may write next to
        it, as plainly (``make_ssl_devcert(str(tmp_path))`` writes ``<tmp_path>.crt``):
        basetemp is a copy-on-write view, whose changes go with the container, and the
        tmp_path a bind of the host's directory on top, which stays."""
        rootdir = str(self.config.rootpath) if self.config else os.getcwd()
        if os.path.realpath(rootdir) in self.containers.hidden_projects():
            # pytest ran with no ini file from (above) a directory that must stay hidden,
            # such as /tmp or HOME: show the test's own directory, not all of it.
            rootdir = ""
        # its directory, when outside the project (one plan per place)
        directory = str(item.path.parent) if item is not None else None
        basetemp = self._basetemp()
        private = tuple(basetemp) if item is not None and rw_binds else ()
        private += _tool_caches(item, rootdir or directory)
        return self.containers.spec(
            options,
            visible_paths(rootdir, basetemp, directory),
            writable_base=rootdir or None,
            rw_binds=rw_binds,
            cgroups=cgroups,
            report_writes=self.report_writes and item is not None,
            copy_on_write=private,
        )


def _tool_caches(item: pytest.Item | None, project: str | None) -> tuple[str, ...]:
    """The caches a test's tools write inside the project, made copy-on-write for it (a
    throwaway view: the project is read-only inside). hypothesis's example database
    (``.hypothesis``), for a hypothesis test: in a read-only project hypothesis warns,
    which ``filterwarnings = error`` makes a failure. Created on the host first, as
    hypothesis itself would on its first run (an overlay needs its directory).
    ``project``: the read-only directory the container shows (rootdir, or the test's)."""
    function = getattr(item, "obj", None) if item is not None else None
    if not project or not getattr(function, "is_hypothesis_test", False):
        return ()
    try:
        from hypothesis.configuration import storage_directory
    except ImportError:
        return ()
    storage = storage_directory("examples", intent_to_write=False)
    home = os.path.realpath(storage.home_directory)
    if not is_under(home, os.path.realpath(project)):
        return ()  # outside the project: not shown, or writable already (/tmp)
    if not os.path.isdir(storage.path):
        try:
            storage.create_if_missing()
        except OSError:
            return ()  # read-only plainly too: hypothesis says so, as it would
    return (home,)


#: The plugin's state, in ``config.stash``.
STATE_KEY = pytest.StashKey[SessionState]()


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
    return stdio_fds(identities)
