"""A pytest plugin for the parity harness: every report and warning the host logs, as
JSON lines, to the file named by ``--parity-out``. Loaded with ``-p reporter``."""

from __future__ import annotations

import json
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--parity-out", default=None, help="write reports here as JSON lines")


# Bound at import: a corpus test patches json (case_patched_stdlib.py) while pytest
# logs its reports, in this process when run plainly.
_encode = json.JSONEncoder(default=repr, sort_keys=True).encode


def _write(config: pytest.Config, record: dict[str, Any]) -> None:
    path = config.getoption("parity_out")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(_encode(record) + "\n")


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG[0]
    longrepr = report.longrepr
    _write(
        config,
        {
            "type": "report",
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "location": list(report.location),
            "head_line": report.head_line,
            "longrepr_type": type(longrepr).__name__,
            "longrepr": list(longrepr) if isinstance(longrepr, tuple) else report.longreprtext,
            "sections": [list(s) for s in report.sections],
            "wasxfail": getattr(report, "wasxfail", None),
            "user_properties": [list(p) for p in report.user_properties],
            "keywords": sorted(report.keywords),
        },
    )


def pytest_warning_recorded(warning_message: Any, when: str, nodeid: str, location: Any) -> None:
    _write(
        _CONFIG[0],
        {
            "type": "warning",
            "nodeid": nodeid,
            "when": when,
            "message": str(warning_message.message),
            "category": warning_message.category.__name__,
            "filename": warning_message.filename,
            "lineno": warning_message.lineno,
        },
    )


_CONFIG: list[pytest.Config] = []


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG[:] = [config]
