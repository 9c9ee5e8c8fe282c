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

import contextlib
import dataclasses
import faulthandler
import functools
import io
import logging
import os
import time
from collections.abc import Callable, Iterator

import pytest

from ..kernel import libc
from ..protocol import framing, messages
from ..protocol.messages import Result
from ..runtime import limits as limits_mod
from ..runtime.options import Options
from ..runtime.spec import spec_data
from .coverage import COVERAGE
from .in_container import _container_protocol, _forwarding, _limit_notes
from .prepared import SESSION_COUNTS
from .reports import (
    MAX_REPORTS,
    MAX_WARNINGS,
    _apply_cache,
    _apply_junit,
    _failure_report,
    _follow_terminal_line,
    _load_report,
    _Received,
    _reissue_warning,
    _report_missing,
)
from .session import SessionState
from .shared import LIMIT_SECTION, LINE_KEY
from .trace import _print_trace

# --- session state --------------------------------------------------------------------------


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
        if kind == Result.REPORT:
            log_report(message)
            os.write(ack_w, b"\0")  # logged: the test process goes on
        elif kind == Result.WARNING:
            warning = messages.checked_warning(message)
            received.warnings += 1
            if received.warnings <= MAX_WARNINGS:
                _reissue_warning(warning)
        elif kind == Result.JUNITXML:
            _apply_junit(item, message)
        elif kind == Result.CACHE:
            _apply_cache(item.config, message)
        elif kind == Result.COVERAGE:
            COVERAGE.add(message)
        elif kind == Result.SESSION_STOP:
            name, reason = messages.checked_session_stop(message)
            if not getattr(item.session, name):
                setattr(item.session, name, reason or True)
        elif kind == Result.SESSION_EXIT:
            received.exit_request = message
        elif kind == Result.INTERRUPT:
            received.interrupted = True
        elif kind == Result.TRACE and writer is not None:
            _print_trace(writer, item, message)
        elif kind == Result.WRITES and state.report_writes:
            state.writes[item.nodeid] = messages.checked_writes(message)

    started = time.monotonic()
    try:
        cgroups = state.containers.cgroups_for(options)
    except limits_mod.CgroupError as exc:
        text = f"rootless: {exc.strerror}"
        received.reports["setup"] = report = _failure_report(item, "setup", text, [], 0.0)
        ihook.pytest_runtest_logreport(report=report)
        return
    prepared = state.keeper.tmp_ahead.pop(item.nodeid, None) or state.tmp_path_for(item)
    spec = state.spec(options, item, rw_binds=(prepared.path,) if prepared else (), cgroups=cgroups)
    _forwarding()  # made here, once, rather than in every test process
    # The host's answer to each report: it has been logged (see _Forwarder).
    ack_r, ack_w = os.pipe2(os.O_CLOEXEC)
    if state.trace and writer is not None:
        libc.set_tracing(True)
    try:
        notes = _limit_notes(options, state.containers.limits_backend())
        outcome = None
        index = state.keeper.index_of(item)
        if cgroups is None and index is not None and state.keeper.preparing(options):
            job = {
                "item": index,
                "nodeid": item.nodeid,
                "session": {name: getattr(item.session, name) for name in SESSION_COUNTS},
                "tmp": dataclasses.astuple(prepared) if prepared else None,
                "options": spec_data(options),
            }
            outcome = state.keeper.run(item, spec, job, ack_r, on_message, ahead)
        if outcome is None:
            spec = dataclasses.replace(spec, keep_fds=spec.keep_fds | {ack_r})
            payload = functools.partial(_container_protocol, item, prepared, notes, ack_r)
            outcome = state.containers.run(spec, payload, on_message, cgroups)
    finally:
        os.close(ack_r)
        os.close(ack_w)
        if state.trace and writer is not None:
            libc.set_tracing(False)
    hits = cgroups.hits() if cgroups is not None else {}
    limit_lines = (
        limits_mod.explain(options, state.containers.limits_backend(), hits, signum=outcome.signal)
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


# --- the container side of one item (runs in the test process, after isolation) -------------


def fail_without_running(item: pytest.Item, text: str) -> None:
    """Report ``item`` as an error in setup without running any of it."""
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    ihook.pytest_runtest_logreport(report=_failure_report(item, "setup", text, [], 0.0))
    teardown = pytest.CallInfo.from_call(lambda: None, "teardown")
    ihook.pytest_runtest_logreport(report=_report_from(item, teardown))
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
