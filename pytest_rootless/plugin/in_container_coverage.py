"""coverage.py in a test process or call process (after fork, inside the container): its
measurement goes up as data, never as a file (the host's end is :mod:`.coverage`)."""

from __future__ import annotations

import sys
from typing import Any

from ..protocol import framing
from ..protocol.messages import Result

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
        return {"kind": Result.COVERAGE, "arcs": arcs, "contexts": contexts}
