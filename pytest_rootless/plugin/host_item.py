"""One pytest item in a container, on the host: the runtest protocol's host half (setup
and teardown of the higher scopes, the reports' logging), with the container run by
:mod:`.host_container` and the item's own phases by :mod:`.in_container`.

The split follows the fixture scopes (docs/how-it-works.md):

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

import contextlib
import faulthandler
import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterator

import pytest

from ..runtime.options import Options
from . import setupstate
from .host_container import ContainerRun
from .reports import (
    MAX_WARNINGS,
    _failure_report,
    _Received,
    _reissue_warning,
)
from .session import SessionState

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


def _skip_marks(config: pytest.Config) -> Callable[..., object] | None:
    """pytest's own evaluation of ``skip``, ``skipif`` and ``xfail(run=False)``: its
    skipping plugin's ``pytest_runtest_setup``, called alone (a subset of the hook, public
    pluggy API). None with ``-p no:skipping``."""
    skipping = config.pluginmanager.getplugin("skipping")
    if skipping is None:
        return None
    others = [p for p in config.pluginmanager.get_plugins() if p is not skipping]
    hook: Callable[..., object] = config.pluginmanager.subset_hook_caller(
        "pytest_runtest_setup", others
    )
    return hook


def _host_setup(item: pytest.Item) -> None:
    """Set up the collector chain and every non-function-scoped fixture on the host.

    First, as pytest does (its skipping plugin's setup hook runs first), the item's skip
    marks: a skipped item sets up nothing, so a module- or session-scoped fixture that
    needs what a ``skipif`` guards against never runs."""
    evaluate = _skip_marks(item.config)
    if evaluate is not None:
        evaluate(item=item)  # raises skip.Exception or xfail.Exception
    with _tempdir_the_container_sees(item.config):
        _set_up_higher_scopes(item)


#: Where ``tempfile`` points while the host sets up fixtures for isolated tests, in basetemp.
HOST_TMP = "rootless-host-tmp"
#: Temporary directories a container replaces by fresh, empty ones.
FRESH_INSIDE = ("/tmp", "/var/tmp", "/dev/shm")


@contextlib.contextmanager
def _tempdir_the_container_sees(config: pytest.Config) -> Iterator[None]:
    """A class, module or session fixture set up on the host for an isolated test makes
    its temporary files (``tempfile.mkdtemp()``, ``mkstemp``, ``NamedTemporaryFile``)
    where the test can read them: in pytest's basetemp, which containers show, instead of
    the host's /tmp, which each container replaces by a fresh one. ``tempfile``'s choice
    is the host's again afterwards."""
    factory = getattr(config, "_tmp_path_factory", None)
    chosen = tempfile.gettempdir()
    home = os.environ.get("HOME") or "/nonexistent"
    hidden = any(
        os.path.commonpath([os.path.realpath(chosen), area]) == area
        for area in (*FRESH_INSIDE, os.path.realpath(home))
    )
    if factory is None or not hidden:
        yield
        return
    directory = factory.getbasetemp() / HOST_TMP
    directory.mkdir(mode=0o700, exist_ok=True)
    saved, tempfile.tempdir = tempfile.tempdir, str(directory)
    try:
        yield
    finally:
        tempfile.tempdir = saved


def _set_up_higher_scopes(item: pytest.Item) -> None:
    state = item.session._setupstate
    # SetupState.setup() only needs listchain() of its argument: the parent's chain.
    state.setup(item.parent)  # type: ignore[arg-type]
    request = getattr(item, "_request", None)
    names = [fixture.argname for fixture in setupstate.wider_fixtures(item)]
    if not request or not names:
        return
    # The item must look active while it requests fixtures (pytest >= 9.1 treats requests
    # from an inactive node as teardown-time requests), but its own setup — the
    # function-scoped fixtures — belongs to the container: push it without calling
    # item.setup(), and pop it again before the fork.
    state.stack[item] = ([], None)
    try:
        for name in names:
            request.getfixturevalue(name)
    finally:
        del state.stack[item]


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


def run_item(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    options: Options,
    state: SessionState,
    next_options: Options | None = None,
    runner: type[ContainerRun] = ContainerRun,
) -> None:
    """pytest's runtest protocol for ``item``, with the item's own phases in a container
    (or, ``runner``, in what stands in for one: the Landlock tier's sandbox)."""
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
        run = runner(item, options, state, received, capture.drain, setup_call.duration)
        run.run(ahead)

    if received.exit_request is not None:
        message = received.exit_request
        code = message.get("returncode")
        raise pytest.exit.Exception(
            str(message.get("reason")), code if isinstance(code, int) else None
        )
    if received.interrupted:
        raise KeyboardInterrupt
    _teardown(item, nextitem, received, capture, reraise)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def _teardown(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    received: _Received,
    capture: _HostCapture,
    reraise: tuple[type[BaseException], ...],
) -> None:
    """The teardown: the container's (function scope) merged with the host's (higher)."""
    if TEARDOWN_ALL_ON_STOP and (item.session.shouldfail or item.session.shouldstop):
        nextitem = None
    teardown_call = pytest.CallInfo.from_call(
        lambda: capture.run(lambda: _host_teardown(item, nextitem)), "teardown", reraise=reraise
    )
    report = _merge_teardown(item, received.reports.get("teardown"), teardown_call)
    for key, text in capture.sections():
        _append_section(report, f"Captured {key} teardown", text)
    item.ihook.pytest_runtest_logreport(report=report)
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


def fail_without_running(item: pytest.Item, text: str) -> None:
    """Report ``item`` as an error in setup without running any of it."""
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    ihook.pytest_runtest_logreport(report=_failure_report(item, "setup", text, [], 0.0))
    teardown = pytest.CallInfo.from_call(lambda: None, "teardown")
    ihook.pytest_runtest_logreport(report=_report_from(item, teardown))
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
