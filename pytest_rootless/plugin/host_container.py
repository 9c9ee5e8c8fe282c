"""The host's side of one test's container: build (or take a prepared) container, follow
what it sends with one method per message kind (as pytest-xdist's ``DSession`` has one
per worker event), and make the reports of whatever it did not send."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from ..kernel import libc
from ..protocol import framing, messages
from ..protocol.messages import Result
from ..runtime import launch
from ..runtime import limits as limits_mod
from ..runtime.mountplan import Plan
from ..runtime.options import Options
from ..runtime.spec import ContainerSpec, spec_data
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
from .shared import LIMIT_SECTION, LINE_KEY, TmpPath
from .trace import _print_trace


class ContainerRun:
    """One test's container, seen from the host. ``received`` collects what came up (the
    item's reports, an exit request); ``drain`` returns what the container wrote into the
    host's capture files and never collected."""

    def __init__(
        self,
        item: pytest.Item,
        options: Options,
        state: SessionState,
        received: _Received,
        drain: Callable[[], tuple[str, str]],
        host_setup_duration: float,
    ) -> None:
        self.item = item
        self.options = options
        self.state = state
        self.received = received
        self.drain = drain
        self.host_setup_duration = host_setup_duration
        self.writer: Any = item.config.pluginmanager.getplugin("terminalreporter")
        self.terminal = item.config.get_terminal_writer()
        self.ack_w = -1  # the host's end of the container's ack pipe, once it exists
        self.plan: Plan | None = None  # the container's mount plan, once it is known
        self.handlers: dict[str, Callable[[framing.Message], None]] = {
            Result.REPORT: self.on_report,
            Result.WARNING: self.on_warning,
            Result.JUNITXML: self.on_junitxml,
            Result.CACHE: self.on_cache,
            Result.COVERAGE: self.on_coverage,
            Result.SESSION_STOP: self.on_session_stop,
            Result.SESSION_EXIT: self.on_session_exit,
            Result.INTERRUPT: self.on_interrupt,
            Result.TRACE: self.on_trace,
            Result.WRITES: self.on_writes,
            Result.BUILT: self.on_built,
            Result.RUNNING: self.on_running,
        }
        self.requested = 0.0  # when the host asked for the container (CLOCK_MONOTONIC)

    # -- what the container sends, one method per kind
    def on_message(self, message: framing.Message) -> None:
        """Dispatch one frame. The container is not trusted: any bad frame ends it."""
        received = self.received
        if received.protocol_error is not None:
            return
        handler = self.handlers.get(message["kind"])
        if handler is None:
            return
        try:
            handler(message)
        except Exception as exc:
            received.protocol_error = (
                str(exc)
                if isinstance(exc, framing.ProtocolError)
                else f"{exc!r} on {message!r:.200}"
            )
            raise framing.ProtocolError(received.protocol_error) from None

    def on_report(self, message: framing.Message) -> None:
        """Log a report as it arrives (the teardown's is held: merged with the host's),
        then let the test process go on."""
        item, received = self.item, self.received
        received.count += 1
        if received.count > MAX_REPORTS:
            raise framing.ProtocolError(f"more than {MAX_REPORTS} reports arrived")
        data = message.get("data")
        line = data.pop(LINE_KEY, None) if isinstance(data, dict) else None
        report = _load_report(item, data)
        _follow_terminal_line(self.terminal, line)
        if type(report) is not pytest.TestReport:
            # One of a plugin's own (a subtest's): logged in the middle of a phase.
            item.ihook.pytest_runtest_logreport(report=report)
            self.terminal.flush()
        else:
            if report.when in received.reports:
                raise framing.ProtocolError(f"a second {report.when} report arrived")
            received.reports[report.when] = report
            if report.when == "setup":  # the host's half of setup counts too
                report.duration += self.host_setup_duration
            if report.when != "teardown":  # held: merged with the host's teardown
                item.ihook.pytest_runtest_logreport(report=report)
                self.terminal.flush()  # before the container writes more (-s, log_cli)
        os.write(self.ack_w, b"\0")  # logged: the test process goes on

    def on_warning(self, message: framing.Message) -> None:
        warning = messages.checked_warning(message)
        self.received.warnings += 1
        if self.received.warnings <= MAX_WARNINGS:
            _reissue_warning(warning)

    def on_junitxml(self, message: framing.Message) -> None:
        _apply_junit(self.item, message)

    def on_cache(self, message: framing.Message) -> None:
        _apply_cache(self.item.config, message)

    def on_coverage(self, message: framing.Message) -> None:
        if self.plan is not None:
            COVERAGE.add(message, self.plan)

    def on_session_stop(self, message: framing.Message) -> None:
        name, reason = messages.checked_session_stop(message)
        if not getattr(self.item.session, name):
            setattr(self.item.session, name, reason or True)

    def on_session_exit(self, message: framing.Message) -> None:
        self.received.exit_request = message

    def on_interrupt(self, message: framing.Message) -> None:
        self.received.interrupted = True

    def on_trace(self, message: framing.Message) -> None:
        if self.writer is not None:
            _print_trace(self.writer, self.item, message)

    def on_writes(self, message: framing.Message) -> None:
        if self.state.report_writes:
            self.state.writes[self.item.nodeid] = messages.checked_writes(message)

    def on_built(self, message: framing.Message) -> None:
        self.state.stats.time("build", messages.checked_seconds(message, "seconds"))

    def on_running(self, message: framing.Message) -> None:
        running_at = messages.checked_seconds(message, "at")
        self.state.stats.time("hand-over", running_at - self.requested)

    # -- the container's life
    def run(self, ahead: tuple[pytest.Item, Options] | None) -> None:
        """Run the item in its container (prepared, when one is); ``ahead`` is the next
        test, whose container is prepared meanwhile."""
        item, options, state = self.item, self.options, self.state
        started = time.monotonic()
        try:
            cgroups = state.containers.cgroups_for(options)
        except limits_mod.CgroupError as exc:
            self._fail_setup(f"rootless: {exc.strerror}")
            return
        tmp = state.keeper.tmp_ahead.pop(item.nodeid, None) or state.tmp_path_for(item)
        try:
            spec = state.spec(options, item, rw_binds=(tmp.path,) if tmp else (), cgroups=cgroups)
        except OSError as exc:  # what the host prepares for it (its root's plan)
            self._not_started(cgroups, tmp, f"could not be built: {exc.strerror or exc}")
            return
        self.plan = spec.plan
        _forwarding()  # made here, once, rather than in every test process
        tracing = state.trace and self.writer is not None
        if tracing:
            libc.set_tracing(True)
        self.requested = time.monotonic()
        try:
            outcome = self._launch(spec, tmp, cgroups, ahead)
        except OSError as exc:  # no process for it now (fork: EAGAIN, ENOMEM)
            self._not_started(cgroups, tmp, f"could not be started: {exc.strerror or exc}")
            return
        finally:
            if tracing:
                libc.set_tracing(False)
        launched = time.monotonic()
        self._finish(outcome, cgroups, tmp, started)
        state.stats.containers += 1
        state.stats.time("teardown", time.monotonic() - launched)

    def _not_started(
        self, cgroups: limits_mod.Cgroups | None, tmp: TmpPath | None, why: str
    ) -> None:
        """The container never ran: what was made for it goes, the test errors in setup."""
        if cgroups is not None:
            self.state.containers.remove_cgroups(cgroups)
        if tmp is not None:
            tmp.tidy_unused()
        self._fail_setup(f"rootless: the container {why}")

    def _fail_setup(self, text: str) -> None:
        report = _failure_report(self.item, "setup", text, [], 0.0)
        self.received.reports["setup"] = report
        self.item.ihook.pytest_runtest_logreport(report=report)

    def _launch(
        self,
        spec: ContainerSpec,
        tmp: TmpPath | None,
        cgroups: limits_mod.Cgroups | None,
        ahead: tuple[pytest.Item, Options] | None,
    ) -> launch.Outcome:
        item, options, state = self.item, self.options, self.state
        # The host's answer to each report: it has been logged (see _Forwarder).
        ack_r, self.ack_w = os.pipe2(os.O_CLOEXEC)
        try:
            notes = _limit_notes(options, state.containers.limits_backend())
            index = state.keeper.index_of(item)
            preparing = cgroups is None and index is not None and state.keeper.preparing(options)
            if not preparing:
                state.stats.cold["options" if state.prepare else "no-prepare"] += 1
            if preparing:
                job = {
                    "item": index,
                    "nodeid": item.nodeid,
                    "session": {name: getattr(item.session, name) for name in SESSION_COUNTS},
                    "tmp": dataclasses.astuple(tmp) if tmp else None,
                    "options": spec_data(options),
                    "ceiling": spec.rlimits.data_growth if options.memory is None else None,
                }
                outcome = state.keeper.run(item, spec, job, ack_r, self.on_message, ahead)
                if outcome is not None:
                    return outcome
            spec = dataclasses.replace(spec, keep_fds=spec.keep_fds | {ack_r})
            ceiling = spec.rlimits.data_growth if options.memory is None else None
            payload = functools.partial(
                _container_protocol, item, tmp, notes, ack_r, ceiling=ceiling
            )
            return state.containers.run(spec, payload, self.on_message, cgroups)
        finally:
            os.close(ack_r)
            os.close(self.ack_w)

    def _finish(
        self,
        outcome: launch.Outcome,
        cgroups: limits_mod.Cgroups | None,
        tmp: TmpPath | None,
        started: float,
    ) -> None:
        """Tidy the test's tmp_path, and report what the container did not."""
        item, options, received = self.item, self.options, self.received
        hits = cgroups.hits() if cgroups is not None else {}
        backend = self.state.containers.limits_backend
        limit_lines = (
            limits_mod.hit_lines(options, backend(), hits, signum=outcome.signal)
            if options.memory or options.pids or options.cpu
            else []
        )
        received.protocol_error = received.protocol_error or outcome.protocol_error
        output = self.drain()
        if tmp is not None:
            call = received.reports.get("call")
            tmp.tidy(item.config, passed=call is not None and call.passed)
        if received.exit_request is not None or received.interrupted:
            return
        elapsed = time.monotonic() - started
        _report_missing(item, options, outcome, received, output, elapsed, limit_lines)
        # A limit hit that did not end the test process (a child was OOM-killed, a fork
        # refused) but made it fail: say so under the failure.
        call = received.reports.get("call")
        if limit_lines and call is not None and call.failed:
            # What the kernel counted replaces what the test process could guess.
            call.sections = [s for s in call.sections if s[0] != LIMIT_SECTION]
            call.sections.append((LIMIT_SECTION, "\n".join(f"{line}." for line in limit_lines)))
