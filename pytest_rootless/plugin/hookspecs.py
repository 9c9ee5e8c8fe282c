"""Hook specifications added by pytest-rootless (registered with ``pytest_addhooks``)."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_rootless_options(
    config: pytest.Config, item: pytest.Item | None, options: dict[str, Any]
) -> None:
    """Shape the options of one container before anything is forked.

    Called once per isolated test (and per container made outside a test, with
    ``item=None``) with the resolved options as a mutable mapping: ini defaults, then
    module, class and function markers. Add ``mounts`` or ``env`` entries, tighten
    limits; the result is validated like marker options.
    """


def pytest_rootless_report_header(config: pytest.Config) -> list[str]:  # type: ignore[empty-body]
    """Extra lines for pytest-rootless's part of the report header."""
