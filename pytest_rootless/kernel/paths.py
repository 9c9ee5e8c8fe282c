"""Two path rules every layer uses: whether one absolute path is at or below another, and
where a host path is found under the root of a simulated host."""

from __future__ import annotations

import os


def is_under(path: str, parent: str) -> bool:
    """``path`` is ``parent`` or below it (``/`` holds every path)."""
    return parent == "/" or path == parent or path.startswith(parent.rstrip("/") + "/")


def in_root(root: str, path: str) -> str:
    """The absolute ``path`` as found under ``root`` (``/`` for this host)."""
    return os.path.join(root, path.lstrip("/"))
