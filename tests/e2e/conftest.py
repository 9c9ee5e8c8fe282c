"""End-to-end tests: a real inner pytest run in a subprocess, with the plugin loaded.

Every test writes a test file with ``pytester.makepyfile`` and runs it with
``pytester.runpytest_subprocess("-p", "rootless", ...)``: forking and namespaces must never
touch the outer pytest process.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _inner_ini(pytester: pytest.Pytester) -> None:
    """Pin the inner run's rootdir to its own directory, with none of our ini settings
    (no ``filterwarnings = error``, no ``-p pytester``): an empty ``[pytest]`` section."""
    pytester.makeini("[pytest]\n")
