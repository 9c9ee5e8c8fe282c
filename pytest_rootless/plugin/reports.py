"""Reports and other messages from a container, checked on the host (only data, only this
test's), and the failure reports the host makes when a container ends badly."""

from __future__ import annotations

import builtins
import dataclasses
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..kernel.paths import is_under
from ..protocol import framing, messages
from ..runtime import launch
from ..runtime.options import Options
from .shared import MARKUP_KEY, PHASES, Phase, junitxml_plugin


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
    data, markup = _checked_data(data)
    try:
        loaded = item.config.hook.pytest_report_from_serializable(config=item.config, data=data)
    except Exception as exc:
        raise framing.ProtocolError(f"a report could not be read: {exc!r}") from None
    report = _checked_kind(loaded, data)
    if report.nodeid != item.nodeid:
        raise framing.ProtocolError(f"a report names another test: {report.nodeid!r}")
    # Decoded JSON holds a copy of every string: share the item's instead, as pytest's own
    # reports do (pytest keeps every report until the end of the run).
    report.nodeid = item.nodeid
    location = _checked_location(report.location)
    report.location = item.location if location == item.location else location
    report.sections = _checked_sections(report.sections)
    if not isinstance(report.duration, int | float) or not isinstance(report.keywords, dict):
        raise framing.ProtocolError("a report has a malformed duration or keywords")
    if report.keywords.keys() <= item.keywords.keys():
        report.keywords = {
            key: report.keywords[key] for key in item.keywords if key in report.keywords
        }
    report.user_properties = _checked_user_properties(report.user_properties)
    _set_longrepr(report, markup)
    _restore_subtest_kwargs(report, data)
    try:  # a plugin's report may compute it from its own data (a subtest's description)
        report.head_line  # noqa: B018
    except Exception as exc:
        raise framing.ProtocolError(f"a report's head line cannot be shown: {exc!r}") from None
    return report


def _checked_data(data: object) -> tuple[dict[str, Any], str | None]:
    """The serialized report, and the rendered longrepr's markup taken out of it."""
    if not isinstance(data, dict):
        raise framing.ProtocolError("a report frame does not hold a TestReport")
    markup = data.pop(MARKUP_KEY, None)
    if markup is not None and not (
        isinstance(markup, str) and isinstance(data.get("longrepr"), str)
    ):
        raise framing.ProtocolError("a report has a malformed rendered longrepr")
    _check_reserved(data, pytest.TestReport)
    if "wasxfail" in data and not isinstance(data["wasxfail"], str):
        raise framing.ProtocolError("a report has a malformed wasxfail")
    return data, markup


def _check_reserved(data: dict[str, Any], cls: type) -> None:
    """Extra keys become instance attributes (TestReport(**extra)): one named like a method
    or property of the class would replace it, and break the terminal summary later;
    "node" is what pytest looks for on reports that came from an xdist worker."""
    shadowing = [
        key
        for key in data
        if key not in REPORT_FIELDS
        and (key in DUCK_TYPED or key.startswith("__") or hasattr(cls, key))
    ]
    if shadowing:
        raise framing.ProtocolError(f"a report sets reserved attributes: {shadowing!r:.200}")


def _checked_kind(report: object, data: dict[str, Any]) -> pytest.TestReport:
    """A TestReport (a plugin's subclass: its own attributes are reserved too), of a phase
    of a test, with an outcome pytest knows."""
    if not isinstance(report, pytest.TestReport):
        raise framing.ProtocolError("a report frame does not hold a TestReport")
    if type(report) is not pytest.TestReport:
        _check_reserved(data, type(report))
    if report.when not in PHASES or report.outcome not in ("passed", "failed", "skipped"):
        raise framing.ProtocolError(f"a report has when={report.when!r} outcome={report.outcome!r}")
    return report


def _checked_location(location: object) -> tuple[str, int | None, str]:
    """(path, line number or None, test name)."""
    if not (
        isinstance(location, list | tuple)
        and len(location) == 3
        and isinstance(location[0], str)
        and isinstance(location[1], int | None)
        and isinstance(location[2], str)
    ):
        raise framing.ProtocolError(f"a report has a malformed location: {location!r:.200}")
    return location[0], location[1], location[2]


def _checked_sections(sections: object) -> list[tuple[str, str]]:
    """(title, text) pairs: captured output and the like."""
    if not isinstance(sections, list) or not all(
        isinstance(s, list | tuple) and len(s) == 2 and all(isinstance(x, str) for x in s)
        for s in sections
    ):
        raise framing.ProtocolError("a report has malformed sections")
    return [(title, text) for title, text in sections]


def _checked_user_properties(props: object) -> list[tuple[str, object]]:
    """(name, value) pairs, as ``record_property`` makes them."""
    if not isinstance(props, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and isinstance(p[0], str) for p in props
    ):
        raise framing.ProtocolError("a report has malformed user_properties")
    return [(name, value) for name, value in props]


def _set_longrepr(report: pytest.TestReport, markup: str | None) -> None:
    """A skip's location as a tuple again, a rendered failure with its markup, anything
    else rendered once now: a malformed one must fail here, not in the summary."""
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
        try:
            report.longreprtext  # noqa: B018
        except Exception as exc:
            raise framing.ProtocolError(f"a report's longrepr cannot be shown: {exc!r}") from None


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


def _apply_junit(item: pytest.Item, message: framing.Message) -> None:
    """Record on the host what the container's ``record_xml_attribute`` and
    ``record_testsuite_property`` recorded, through the junitxml plugin's own methods;
    before the host logs the teardown report, which writes the test case."""
    pairs = messages.checked_junit(message)
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
    (an "error" filter raised there). A container's warning (messages.checked_warning)
    holds the source line it saw: given a line, ``formatwarning`` never opens the file
    (nor fills ``linecache`` with it), which names a path of the container's choosing.
    Only a warning the host makes itself, about its own item, has none."""
    category = _warning_category(str(message["category"]), str(message["module"]))
    line = message.get("line")
    warnings.showwarning(
        category(str(message["message"])),
        category,
        str(message["filename"]),
        int(message["lineno"]),
        line=None if line is None else str(line),
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
    missing = [when for when in _expected_phases(item, received) if when not in received.reports]
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
        lines = _setup_error_lines(outcome.setup_error)
    lines += _crash_lines(outcome)
    sections = [
        (f"Captured {key} {when}", text)
        for key, text in zip(("stdout", "stderr"), output, strict=True)
        if text
    ]
    report = _failure_report(item, when, "\n".join(lines), sections, elapsed)
    received.reports[when] = report
    if when != "teardown":
        item.ihook.pytest_runtest_logreport(report=report)


def _expected_phases(item: pytest.Item, received: _Received) -> list[Phase]:
    """The phases the container should have reported: no call after a failed setup (nor
    under --setup-only)."""
    expected: list[Phase] = ["setup"]
    setup = received.reports.get("setup")
    if setup is None or (setup.passed and not item.config.getoption("setuponly", False)):
        expected.append("call")
    expected.append("teardown")
    return expected


def _setup_error_lines(err: framing.Message) -> list[str]:
    """What failed building the container or starting the test, the steps taken, the
    traceback."""
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
    return lines


def _crash_lines(outcome: launch.Outcome) -> list[str]:
    """The stacks faulthandler wrote (at a timeout, or a crash), if any."""
    if not outcome.crash_text.strip():
        return []
    title = (
        "stack of every thread at the timeout"
        if outcome.timed_out
        else "Python traceback (faulthandler)"
    )
    return ["", f"{title}:", outcome.crash_text.rstrip()]


def _apply_cache(config: pytest.Config, message: framing.Message) -> None:
    """Set on the host the values a test set in ``config.cache``: keys checked as text
    (messages.checked_cache), then where they lead (a symlink in the cache directory may
    point out of it); any key that leaves the directory refuses the whole frame."""
    values = messages.checked_cache(message)
    cache: Any = getattr(config, "cache", None)
    if cache is None:
        return
    cachedir = getattr(cache, "_cachedir", None)  # pytest's own attribute, where it is
    if cachedir is not None:
        base = os.path.realpath(os.path.join(cachedir, "v"))
        for key in values:
            resolved = os.path.realpath(os.path.join(base, key))
            if resolved == base or not is_under(resolved, base):
                raise framing.ProtocolError(
                    f"a cache key {key!r:.200} resolves outside the cache directory"
                )
    for key, value in values.items():
        cache.set(key, value)


@dataclass
class _Received:
    reports: dict[str, pytest.TestReport] = field(default_factory=dict)
    count: int = 0  # reports, subtests' included
    warnings: int = 0
    exit_request: framing.Message | None = None
    interrupted: bool = False
    protocol_error: str | None = None
