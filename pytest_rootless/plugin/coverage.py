"""The host's end of coverage measured in containers (the test process's end is
:mod:`.in_container_coverage`)."""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from ..kernel.paths import is_under
from ..protocol import framing, messages
from ..runtime.mountplan import Plan
from ..runtime.rootfs import shows_host_file
from .in_container_coverage import ContainerCoverage


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

    def add(self, message: framing.Message, plan: Plan) -> None:
        """Take one frame: ``{"arcs": bool, "contexts": {context: {path: lines or
        arcs}}}``, the lines (or arcs) measured under each dynamic context (see
        messages.checked_coverage), from a container of ``plan``. Only files that
        container saw of the host's tree, and that the measuring Coverage's settings
        select, are kept: a report renders each file's source from the host, and a test
        can forge this frame naming any path (see _accepts)."""
        arcs, checked = messages.checked_coverage(message)
        data = self._data(arcs)
        if data is None:
            return
        nested = data is not self.data  # the live measurement of a test process
        accepts = _Selection(sys.modules["coverage"].Coverage.current(), plan)
        for context, files in checked.items():
            files = {path: found for path, found in files.items() if accepts(path)}
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
        combines (plugin/__init__.py), and at the end of the session and of the process."""
        if self.owner != os.getpid() or self.data is None:
            return
        module: Any = sys.modules.get("coverage")
        current = module.Coverage.current() if module is not None else None
        if current is not None:
            current.get_data().update(self.data)
            self.data = self.arcs = None


class _Selection:
    """Which files measured in a container the host takes (see CoverageSink.add): a file
    the container saw at the same path on the host (runtime.rootfs.shows_host_file: not
    one of its fresh tmpfs, its own root's or an image's), which the measuring
    Coverage's ``source`` (directories or packages) or else ``include`` select, and its
    ``omit`` does not. The test process measures with the same settings, so this drops
    only what a test forged (or wrote in a scratch area, which the host does not have)."""

    def __init__(self, coverage: Any, plan: Plan) -> None:
        self.plan = plan
        option = coverage.get_option
        self.dirs: list[str] = []
        self.packages: list[str] = []
        for entry in [*(_option(option, "run:source")), *(_option(option, "run:source_dirs"))]:
            if os.path.isdir(entry):
                self.dirs.append(os.path.realpath(entry))
            else:
                self.packages.append(entry)
        self.packages += _option(option, "run:source_pkgs")
        self.include = _matcher(_option(option, "run:include"))
        self.omit = _matcher(_option(option, "run:omit"))

    def __call__(self, name: str) -> bool:
        # relative to the current directory with coverage.py's relative_files; a path
        # through a symlink is not the file the container saw there
        path = os.path.abspath(name)
        if not shows_host_file(self.plan, path) or os.path.realpath(path) != path:
            return False
        if self.omit is not None and self.omit.match(path):
            return False
        if self.dirs or self.packages:
            return any(is_under(path, d) for d in self.dirs) or any(
                _in_package(path, name) for name in self.packages
            )
        return self.include is None or bool(self.include.match(path))


def _option(get: Any, name: str) -> list[str]:
    try:
        value = get(name)
    except Exception:  # an option this coverage.py does not have
        return []
    return [str(v) for v in value or () if v]


def _matcher(patterns: list[str]) -> Any:
    """coverage.py's own matcher of file patterns (relative ones from the current
    directory, as coverage.py reads them)."""
    if not patterns:
        return None
    from coverage.files import GlobMatcher, prep_patterns

    return GlobMatcher(prep_patterns(patterns), "rootless")


def _in_package(path: str, name: str) -> bool:
    """Whether ``path`` is a module of the package ``name`` (by its directories: the host
    does not import a package to find it)."""
    parts = "/" + name.replace(".", "/")
    return f"{parts}/" in path or path.endswith(f"{parts}.py")


#: This process's sink (the host's), for isolated tests and live containers alike.
COVERAGE = CoverageSink()
