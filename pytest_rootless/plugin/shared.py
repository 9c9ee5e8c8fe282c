"""What both sides of an isolated test share: the phases, report keys and section titles,
the test's ``tmp_path`` made on the host, and finding pytest's junitxml plugin."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import pluggy
import pytest

Phase = Literal["setup", "call", "teardown"]


#: The report section that names the limit a test was stopped by.
LIMIT_SECTION = "rootless: limit reached"


PHASES: tuple[Phase, ...] = ("setup", "call", "teardown")


_HOOKSPEC = pluggy.HookspecMarker("pytest")


_HOOKIMPL = pluggy.HookimplMarker("pytest")


#: The extra key of a report frame holding a longrepr rendered with markup.
MARKUP_KEY = "rootless_longrepr_markup"


#: The extra key of a report frame holding the terminal's current line in the container.
LINE_KEY = "rootless_terminal_line"


def junitxml_plugin(config: pytest.Config) -> Any:
    """pytest's junitxml plugin object when ``--junitxml`` is on, else None. pytest keeps
    it under a private stash key; it is found here by what it does."""
    for plugin in config.pluginmanager.get_plugins():
        if callable(getattr(plugin, "add_global_property", None)) and callable(
            getattr(plugin, "node_reporter", None)
        ):
            return plugin
    return None


@dataclass(frozen=True)
class TmpPath:
    """The test's writable directory in basetemp, made on the host before the container."""

    basename: str
    path: str
    statically_used: bool  # tmp_path/tmpdir among the item's fixtures

    def tidy(self, config: pytest.Config, passed: bool) -> None:
        """Remove it if the test left it empty and pytest would not have kept it: never
        asked for, or the retention policy drops the directories of passed tests."""
        policy = config.getini("tmp_path_retention_policy")
        if self.statically_used and not (policy == "failed" and passed):
            return
        self.tidy_unused()

    def tidy_unused(self) -> None:
        try:
            os.rmdir(self.path)  # only if empty
        except OSError:
            pass


#: Fixtures that make temporary directories (pytester's use tmp_path_factory).
TMP_FIXTURES = frozenset({"tmp_path", "tmpdir", "tmp_path_factory", "tmpdir_factory"})
