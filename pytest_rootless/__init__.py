"""pytest-rootless: run tests inside rootless Linux containers built from kernel primitives.

Load it with ``pytest -p rootless`` (it also autoloads once installed); mark tests with
``@pytest.mark.isolated`` or isolate a whole suite with ``--rootless``.
"""

from __future__ import annotations

from .plugin.container import Container, Process
from .plugin.fixtures import run_isolated
from .protocol.errors import RemoteError
from .runtime.options import OptionError
from .runtime.probe import UnsupportedHost

__all__ = ["Container", "OptionError", "Process", "RemoteError", "UnsupportedHost", "run_isolated"]
__version__ = "0.1.0"
