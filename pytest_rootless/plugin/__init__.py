"""pytest hooks of pytest-rootless: options, ini values, markers, header and summary.

The work is done elsewhere: options resolve in :mod:`.config` and
:mod:`pytest_rootless.runtime.options`, the host's support is decided by
:mod:`pytest_rootless.runtime.probe`, and an isolated item runs through :mod:`.host_item`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from ..runtime import limits
from ..runtime import options as optionrules
from ..runtime.session import ContainerSession
from . import hookspecs, host_item
from . import landlock as landlock_tier
from .config import (
    _INI,
    CONTAINER_MARKER,
    ISOLATED_MARKER,
    OPTIONS_KEY,
    _ini_options,
    _wants_isolation,
    require,
    resolve_options,
)
from .coverage import COVERAGE
from .fixtures import container, container_factory
from .in_container import INSIDE_KEY
from .session import STATE_KEY, SessionState
from .stats import summary as stats_summary

#: Where a pytest-xdist worker leaves its --rootless-stats for the controller.
STATS_OUTPUT = "rootless_stats"

__all__ = ["container", "container_factory"]  # fixtures, found here by pytest


HELP_ROOTLESS = "run every test as if it carried @pytest.mark.isolated."
HELP_OFF = "run tests marked isolated WITHOUT isolation (for debugging); warns in the summary."
HELP_REQUIRE = (
    "fail isolated tests when this host cannot isolate them, instead of skipping them "
    "(ini: rootless_require = true)."
)
HELP_TRACE = "print, per container, the kernel steps it took (one line per syscall)."
HELP_NO_PREPARE = (
    "build each container when its test comes, from pytest itself, instead of ahead of "
    "it from a copy of pytest (slower; to compare, or to rule the preparing out)"
)
HELP_REPORT_WRITES = (
    "at the end, list per isolated test what it wrote outside /tmp, HOME and tmp_path "
    "(its writable paths, /var/tmp, /dev/shm): tests that leave things behind or depend on "
    "them."
)
HELP_TMPFS_SIZE = (
    "size of each fresh tmpfs of a container (/tmp, /var/tmp, /dev/shm, HOME, the upper "
    "layers of writable paths), like 512M or 2G; a full one gives the test ENOSPC "
    "(default 1G)."
)
HELP_DEFAULT_MEMORY = (
    "memory ceiling of every process of a container with no memory= option (RLIMIT_DATA: "
    "how much each may grow), like 4G; none: no ceiling (default: half this machine's RAM)."
)
HELP_STATS = (
    "after the run, say where the isolated tests' time went: containers made and prepared "
    "ahead, zygotes made and why, and each stage's median and 95th percentile."
)
HELP_DOCTOR = (
    "print what this host allows for isolated tests and the fix for what it lacks, then "
    "exit (1 when isolation cannot work); same as `python -m pytest_rootless doctor`."
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rootless", "rootless containers (pytest-rootless)")
    group.addoption("--rootless", action="store_true", default=False, help=HELP_ROOTLESS)
    group.addoption("--rootless-off", action="store_true", default=False, help=HELP_OFF)
    group.addoption("--rootless-require", action="store_true", default=False, help=HELP_REQUIRE)
    group.addoption("--rootless-trace", action="store_true", default=False, help=HELP_TRACE)
    group.addoption(
        "--rootless-report-writes", action="store_true", default=False, help=HELP_REPORT_WRITES
    )
    group.addoption(
        "--rootless-no-prepare", action="store_true", default=False, help=HELP_NO_PREPARE
    )
    group.addoption("--rootless-stats", action="store_true", default=False, help=HELP_STATS)
    parser.addini("rootless_tmpfs_size", HELP_TMPFS_SIZE, default="")
    parser.addini("rootless_default_memory", HELP_DEFAULT_MEMORY, default="")
    group.addoption("--rootless-doctor", action="store_true", default=False, help=HELP_DOCTOR)
    landlock_tier.addoption(parser, group)
    parser.addini("rootless_require", HELP_REQUIRE, type="bool", default=False)
    for name, (kind, help_text) in _INI.items():
        default: Any = {"bool": False, "linelist": []}.get(kind, "")
        parser.addini(f"rootless_{name}", help_text, type=kind, default=default)  # type: ignore[arg-type]


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--rootless-doctor`` reports and ends the run, as ``--markers`` does: no tests."""
    if not config.getoption("rootless_doctor"):
        return None
    from ..doctor import doctor

    return doctor()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", ISOLATED_MARKER)
    config.addinivalue_line("markers", CONTAINER_MARKER)
    state = SessionState(
        config,
        ContainerSession(trace=bool(config.getoption("rootless_trace"))),
        report_writes=bool(config.getoption("rootless_report_writes")),
        prepare=not config.getoption("rootless_no_prepare"),
    )
    size = config.getini("rootless_tmpfs_size")
    if size:
        try:
            state.containers.tmpfs_size = optionrules.parse_size(size)
        except ValueError:
            raise pytest.UsageError(
                f"ini rootless_tmpfs_size={size!r} is invalid: accepted a size like 512M or 2G"
            ) from None
    ceiling = config.getini("rootless_default_memory").strip()
    if ceiling.lower() == "none":
        state.containers.memory_ceiling = None
    elif ceiling:
        try:
            state.containers.memory_ceiling = optionrules.parse_size(ceiling)
        except ValueError:
            raise pytest.UsageError(
                f"ini rootless_default_memory={ceiling!r} is invalid: accepted a size like "
                "4G, or none"
            ) from None
    config.stash[STATE_KEY] = state
    landlock_tier.configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None:
        state.close()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = config.stash[STATE_KEY]
    isolated = []
    for item in items:
        if not _wants_isolation(item):
            continue
        try:
            options = resolve_options(config, item, list(item.iter_markers("isolated")))
            optionrules.refuse_named_network(options)
        except optionrules.OptionError as exc:
            raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
        isolated.append(item)
        if not config.getoption("rootless_off"):
            item.stash[OPTIONS_KEY] = options
    state.isolated = len(isolated)
    if not isolated or config.getoption("rootless_off"):
        return
    support = state.containers.probe()
    if support.ok:
        return
    landlocked = landlock_tier.wanted(config) and landlock_tier.assign(
        config, isolated, support, OPTIONS_KEY, require(config)
    )
    if landlocked or require(config):
        return
    state.unsupported = len(isolated)
    also = landlock_tier.unavailable(config) if landlock_tier.wanted(config) else ""
    for item in isolated:
        item.add_marker(pytest.mark.skip(reason=f"rootless: {support.reason}{also}"))
        del item.stash[OPTIONS_KEY]


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """Innermost, so that what coverage.py measured in containers joins pytest's
    measurement before pytest-cov (whose wrapper is outside this one) stops and saves it."""
    try:
        return (yield)
    finally:
        COVERAGE.flush()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    options = item.stash.get(OPTIONS_KEY, None)
    if item.stash.get(INSIDE_KEY, False):
        return None  # in its container already: pytest's own protocol
    state = item.config.stash[STATE_KEY]
    if options is None:  # not isolated: pytest's own protocol, here
        state.keeper.local_runs += 1
        return None
    support = state.containers.probe()
    if not support.ok and landlock_tier.runs(item):
        host_item.run_item(item, nextitem, options, state, runner=landlock_tier.LandlockRun)
        return True
    if not support.ok:
        host_item.fail_without_running(
            item, f"rootless: isolation is required (--rootless-require) but {support.reason}"
        )
        return True
    next_options = nextitem.stash.get(OPTIONS_KEY, None) if nextitem is not None else None
    host_item.run_item(item, nextitem, options, state, next_options)
    return True


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker hands its --rootless-stats to the controller."""
    state = session.config.stash.get(STATE_KEY, None)
    output = getattr(session.config, "workeroutput", None)
    if state is not None and output is not None and session.config.getoption("rootless_stats"):
        output[STATS_OUTPUT] = state.stats.data()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller: a worker ended; add up its --rootless-stats."""
    state = node.config.stash.get(STATE_KEY, None)
    data = getattr(node, "workeroutput", {}).get(STATS_OUTPUT)
    if state is not None and data is not None:
        state.stats.add(data)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if config.getoption("rootless_off"):
        line = "rootless: OFF (--rootless-off): tests marked isolated run without isolation"
    else:
        scope = (
            "every test (--rootless)"
            if config.getoption("rootless")
            else "tests marked @pytest.mark.isolated"
        )
        try:
            defaults = optionrules.validate(_ini_options(config)).describe()
        except optionrules.OptionError as exc:
            raise pytest.UsageError(str(exc)) from None
        line = f"rootless: isolating {scope}; defaults {defaults}"
    lines = [line]
    state = config.stash.get(STATE_KEY, None)
    if state is not None and not config.getoption("rootless_off"):
        ceiling = limits.ceiling_header(state.containers.memory_ceiling)
        lines.append(f"rootless: {state.containers.limits_backend().header()}; {ceiling}")
        if landlock_tier.wanted(config):
            lines.append(f"rootless: {landlock_tier.header(config, state.containers.probe())}")
    for extra in config.hook.pytest_rootless_report_header(config=config):
        lines.extend(extra)
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return
    if config.getoption("rootless_off") and state.isolated:
        terminalreporter.write_sep("=", "rootless", yellow=True)
        terminalreporter.write_line(
            f"WARNING: --rootless-off: {state.isolated} test(s) that ask for isolation ran "
            "WITHOUT it, on the host.",
            yellow=True,
        )
    elif state.unsupported and state.containers.support is not None:
        terminalreporter.write_sep("=", "rootless", yellow=True)
        terminalreporter.write_line(
            f"{state.unsupported} isolated test(s) skipped: {state.containers.support.reason}",
            yellow=True,
        )
    landlock_tier.summary(terminalreporter, config)
    if state.report_writes:
        _report_writes(terminalreporter, state.writes)
    if config.getoption("rootless_stats") and not hasattr(config, "workeroutput"):
        terminalreporter.write_sep("=", "rootless: where the time went (--rootless-stats)")
        for line in stats_summary(state.stats):
            terminalreporter.write_line(line)


def _report_writes(terminalreporter: Any, writes: dict[str, dict[str, str]]) -> None:
    """The hermeticity report: what each isolated test left outside its scratch space."""
    terminalreporter.write_sep("=", "rootless: writes outside /tmp, HOME and tmp_path")
    dirty = {nodeid: changes for nodeid, changes in writes.items() if changes}
    if not dirty:
        terminalreporter.write_line(f"none: {len(writes)} isolated test(s) wrote nothing there")
        return
    for nodeid, changes in dirty.items():
        terminalreporter.write_line(nodeid)
        for path, kind in changes.items():
            terminalreporter.write_line(f"    {kind:<9} {path}")
    terminalreporter.write_line(
        f"{len(dirty)} of {len(writes)} isolated test(s) wrote outside their scratch space"
    )
