"""The host's end of coverage measured in containers (the test process's end is
:mod:`.in_container_coverage`)."""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from ..protocol import framing, messages
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

    def add(self, message: framing.Message) -> None:
        """Take one frame: ``{"arcs": bool, "contexts": {context: {path: lines or
        arcs}}}``, the lines (or arcs) measured under each dynamic context (see
        messages.checked_coverage)."""
        arcs, checked = messages.checked_coverage(message)
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
        combines (plugin/__init__.py), and at the end of the session and of the process."""
        if self.owner != os.getpid() or self.data is None:
            return
        module: Any = sys.modules.get("coverage")
        current = module.Coverage.current() if module is not None else None
        if current is not None:
            current.get_data().update(self.data)
            self.data = self.arcs = None


#: This process's sink (the host's), for isolated tests and live containers alike.
COVERAGE = CoverageSink()
