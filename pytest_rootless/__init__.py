"""pytest-rootless: run tests inside rootless Linux containers built from kernel primitives.

Load it with ``pytest -p rootless`` (it also autoloads once installed); mark tests with
``@pytest.mark.isolated`` or isolate a whole suite with ``--rootless``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plugin.container import Container, Process
    from .plugin.fixtures import run_isolated
    from .protocol.errors import RemoteError
    from .runtime.options import OptionError
    from .runtime.probe import UnsupportedHost

__all__ = ["Container", "OptionError", "Process", "RemoteError", "UnsupportedHost", "run_isolated"]
__version__ = "0.1.0"

#: Where each public name lives. Imported on first use (PEP 562), so that a process of
#: this package that is not pytest (the builder of prepared containers, whose copies are
#: every container's init: runtime.child.builder) does not import pytest with it.
_PUBLIC = {
    "Container": ".plugin.container",
    "Process": ".plugin.container",
    "run_isolated": ".plugin.fixtures",
    "RemoteError": ".protocol.errors",
    "OptionError": ".runtime.options",
    "UnsupportedHost": ".runtime.probe",
}


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
