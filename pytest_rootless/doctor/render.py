"""The doctor's report: one line per check, then why and the fix; the verdict; the exit
status."""

from __future__ import annotations

import platform
import sys
import textwrap
from typing import TextIO

from .checks import MISSING, OPTIONAL, UNTRIED, Check, run_checks
from .host import Host

WIDTH = 100
INDENT = " " * 10


def render(checks: list[Check], host: Host) -> list[str]:
    user = host.user_name()
    lines = [
        "pytest-rootless doctor: what this host allows for isolated tests",
        f"({platform.system()} {host.read('/proc/sys/kernel/osrelease') or '?'}, "
        f"{platform.machine()}, uid {host.uid}{'' if user == str(host.uid) else f' ({user})'}, "
        f"Python {platform.python_version()}" + ("" if host.live else "; kernel trials off") + ")",
        "",
    ]
    for check in checks:
        lines += textwrap.wrap(
            f"{check.status:<9} {check.name}: {check.found}",
            WIDTH,
            subsequent_indent=INDENT,
            break_on_hyphens=False,
        )
        if check.status in (MISSING, OPTIONAL):
            extra = ([f"why: {check.why}"] if check.why else []) + [f"fix: {f}" for f in check.fix]
            for text in extra:
                lines += textwrap.wrap(
                    text,
                    WIDTH,
                    initial_indent=INDENT,
                    subsequent_indent=INDENT + "     ",
                    break_on_hyphens=False,
                )
            # as they are: a file and commands are copied, not read as prose
            lines += [f"{INDENT}{line}" if line else "" for line in check.details]
    lines.append("")
    lines += textwrap.wrap(verdict(checks), WIDTH, break_on_hyphens=False)
    return lines


def verdict(checks: list[Check]) -> str:
    missing = [c.name for c in checks if c.status == MISSING]
    if missing:
        return (
            f"isolation cannot work here ({', '.join(missing)}): isolated tests are skipped, "
            "or fail under --rootless-require. Fix the 'missing' lines above."
        )
    if any(c.status == UNTRIED for c in checks):
        return "nothing needed is missing, but not everything was tried on this kernel."
    return "isolation works here: isolated tests run in containers."


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == MISSING for c in checks) else 0


def doctor(host: Host | None = None, out: TextIO | None = None) -> int:
    """Print the report for ``host`` (this machine by default); 1 if isolation cannot work."""
    host = host or Host()
    checks = run_checks(host)
    out = out or sys.stdout
    out.write("\n".join(render(checks, host)) + "\n")
    out.flush()
    return exit_code(checks)
