"""The container side of one test (runs in the test process, after isolation): pytest's
own runtest protocol, with the hooks that *log* a test forwarded to the host as data."""

from __future__ import annotations

import functools
import io
import json
import linecache
import os
import sys
import threading
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pluggy
import pytest

from ..protocol import framing
from ..protocol.messages import Result, cache_key_problem
from ..runtime import limits as limits_mod
from ..runtime.options import Options
from . import setupstate
from .in_container_coverage import ContainerCoverage
from .shared import (
    _HOOKIMPL,
    _HOOKSPEC,
    LIMIT_SECTION,
    LINE_KEY,
    MARKUP_KEY,
    TmpPath,
    junitxml_plugin,
)

# Bound once, at import: the forwarder runs while the test runs, and a test may patch
# these for its duration (see protocol.framing, where the frames are written).
_read = os.read
_StringIO = io.StringIO

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
    buffer = _StringIO()
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


def _use_host_tmp_path(config: pytest.Config, prepared: TmpPath | None) -> None:
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
        self,
        item: pytest.Item,
        send: Callable[[framing.Message], None],
        ack_fd: int,
        ceiling: int | None = None,
    ) -> None:
        """Forward for ``item``, in its test process (``ceiling``: the default memory
        ceiling its processes have, see _name_the_ceiling)."""
        self.item = item
        self.ceiling = ceiling
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
        self._name_the_ceiling(report)
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
            self.send({"kind": Result.REPORT, "data": _fit(data)})
            if not _read(self.ack_fd, 1):
                raise RuntimeError("pytest-rootless: the host closed the container's channel")
        if report.when == "setup" and type(report) is pytest.TestReport:
            _tear_down_what_the_container_added(self.item, self.inherited)
        self._stop_the_session_on_the_host()

    def _name_the_ceiling(self, report: pytest.TestReport) -> None:
        """A test that failed of a MemoryError under the default memory ceiling says so, in
        the section a ``memory`` limit's failure has (here, not in a makereport wrapper:
        registering a plugin costs every test process ~1 ms)."""
        if self.ceiling is None or not report.failed:
            return
        crash = getattr(report.longrepr, "reprcrash", None)
        message = str(getattr(crash, "message", ""))
        if message.startswith("MemoryError") and LIMIT_SECTION not in dict(report.sections):
            line = limits_mod.ceiling_line(self.ceiling)
            report.sections.append((LIMIT_SECTION, f"{line}."))

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
                self.send({"kind": Result.SESSION_STOP, "attribute": name, "reason": reason})
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
        filename, lineno = str(warning_message.filename), int(warning_message.lineno or 0)
        # The source line as this process sees it: the host shows it as sent and never
        # opens a file a container names (see reports._reissue_warning).
        line = warning_message.line
        if line is None:
            line = linecache.getline(filename, lineno)
        self.send(
            {
                "kind": Result.WARNING,
                "message": str(warning_message.message),
                "category": category.__name__,
                "module": category.__module__,
                "filename": filename,
                "lineno": lineno,
                "line": str(line),
            }
        )


def _terminal_line(config: pytest.Config) -> str | None:
    """The terminal writer's current line (see _follow_terminal_line)."""
    line = getattr(config.get_terminal_writer(), "_current_line", None)
    return line if isinstance(line, str) else None


def _forward_log_hooks(
    item: pytest.Item,
    send: Callable[[framing.Message], None],
    ack_fd: int,
    ceiling: int | None = None,
) -> None:
    """Replace, in this process only, the callers of the logging hooks by ones whose only
    implementation is a :class:`_Forwarder`. Made by a PluginManager of their own (public
    pluggy API); set on the hook relay the way pluggy fills it, so item.ihook and its
    per-directory subsets (FSHookProxy) resolve to them too."""
    config = item.config
    manager, forwarder = _forwarding()
    forwarder.attach(item, send, ack_fd, ceiling)
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
        problem = cache_key_problem(key) if isinstance(key, str) else "is not a string"
        if problem is not None:  # the host would refuse it: say so here, in the test
            raise ValueError(f"pytest-rootless: the cache key {key!r} {problem}")
        json.dumps(value, ensure_ascii=False, indent=2)  # as the real set: its error, here
        self.values[key] = value

    def get_value(self, key: str, default: object) -> object:
        if key in self.values:
            return self.values[key]
        return self.get(key, default)

    def message(self) -> framing.Message | None:
        return {"kind": Result.CACHE, "values": self.values} if self.values else None


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
            "kind": Result.JUNITXML,
            "attributes": [[str(k), str(v)] for k, v in attributes.items()],
            "properties": [[str(k), str(v)] for k, v in added],
        }


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


#: Set in the container's copy of the item: its pytest_runtest_protocol is pytest's own.
INSIDE_KEY = pytest.StashKey[bool]()


def _container_protocol(
    item: pytest.Item,
    prepared_tmp: TmpPath | None,
    limit_notes: Callable[..., list[str]] | None,
    ack_fd: int,
    result_fd: int,
    *,
    ceiling: int | None = None,
) -> int:
    """pytest's own runtest protocol for one item (``pytest_runtest_protocol``, with every
    plugin's wrapper: warnings, faulthandler, assertion, unittest, timeouts), the
    logging hooks forwarded to the host instead (see :class:`_Forwarder`).
    ``limit_notes(exception=...)`` names the limit an exception comes from, if one (None:
    the test has no limits). ``ceiling``: the default memory ceiling, when the test has
    no ``memory`` option."""
    config = item.config
    measuring = ContainerCoverage.start()
    setupstate.mirror_host_stack(item)  # a prepared copy may be older than the host's
    _use_host_tmp_path(config, prepared_tmp)
    send = functools.partial(framing.send, result_fd)
    _forward_log_hooks(item, send, ack_fd, ceiling)
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
        send({"kind": Result.SESSION_EXIT, "reason": exc.msg, "returncode": exc.returncode})
    except KeyboardInterrupt:
        send({"kind": Result.INTERRUPT})
    cached = cache.message() if cache is not None else None
    for message in (junit.recorded(item.nodeid), cached, measuring and measuring.finish()):
        if message:
            send(message)
    # Everything is sent; the host ends the container when it reads this, so what is
    # still buffered for the terminal (-s) goes out first.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    send({"kind": Result.DONE, "status": 0})
    return 0


def _limit_notes(options: Options, backend: limits_mod.Backend) -> Callable[..., list[str]] | None:
    """What names the limit a test's exception comes from; None if it has no limits."""
    if options.memory is None and options.pids is None and options.cpu is None:
        return None
    return functools.partial(limits_mod.hit_lines, options, backend, {})
