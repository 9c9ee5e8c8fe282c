"""``--rootless-trace``: each container's kernel steps, printed under a heading per stage."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import pytest

from ..kernel import libc
from ..protocol import framing
from .session import SessionState


def _print_trace(writer: Any, item: pytest.Item, message: framing.Message) -> None:
    """One line per kernel step, in order (the host's clone, then init's steps, then the
    test process's), each stage under a one-line heading saying what its steps build."""
    lines = message.get("lines")
    if not isinstance(lines, list):
        return
    stage = str(message.get("stage"))
    steps = [(stage, str(line)) for line in lines]
    if stage == "init":
        writer.ensure_newline()
        writer.write_line(f"rootless trace {item.nodeid}:")
        steps = [("host", line) for line in libc.TRACE] + steps  # the clone(2) made by the host
    joins = " joins its cgroups," if any("cgroup.procs" in line for _, line in steps) else ""
    headings = {
        "user": f"user namespace (user_namespaces(7)): init, PID 1 of new namespaces,{joins} "
        "maps your ids",
        "root": "root filesystem (mount_namespaces(7)): a tmpfs, read-only binds, pivot_root(2)",
        "inner": "inner namespaces (namespaces(7)): user, mount (locked), UTS, IPC, net; "
        "hostname, lo",
        "test": "test process (capabilities(7), seccomp(2)): PID 2 drops privileges, runs the test",
    }
    mounting = ("mount", "mount_setattr", "fsopen", "fsconfig", "fsmount", "move_mount")
    group = "test" if stage == "test" else "user" if stage == "init" else stage
    shown = None
    for who, line in steps:
        call = line.partition("(")[0]
        if who == "init" and call == "unshare":
            group = "inner"
        elif who == "init" and group == "user" and call in mounting:
            group = "root"
        if group != shown:
            writer.write_line(f"  # {headings.get(group, group)}")
            shown = group
        writer.write_line(f"  [{who}] {line}")


def _show_trace(state: SessionState, title: str, lines: Sequence[str], stage: str = "init") -> None:
    """--rootless-trace for a live container: the steps of its init (or of its network's
    holder), printed as for an isolated test, with pytest's capture suspended meanwhile."""
    config = state.config
    terminal = config.pluginmanager.get_plugin("terminalreporter") if config else None
    if config is None or terminal is None:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        terminal.ensure_newline()
        terminal.write_line(f"rootless trace {title}:")
        for line in lines:
            terminal.write_line(f"  [{stage}] {line}")
