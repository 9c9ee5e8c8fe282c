"""``python -m pytest_rootless doctor``: what this host allows for isolated tests.

Prints one line per capability (``ok``, ``missing``, ``optional``, ``untried``) with the
fix for each problem, and exits 1 when isolation cannot work here, 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .doctor import Host, doctor


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_rootless",
        description="Tools of pytest-rootless (rootless containers for pytest).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "doctor",
        help="print what this host allows for isolated tests, and how to fix what it lacks",
        description="Print each capability isolated tests need, whether this host has it, "
        "and the fix for each one it lacks. Exit status 1 when isolation cannot work.",
    )
    check.add_argument(
        "--root",
        metavar="DIR",
        default="/",
        help="read /proc, /etc and /sys under DIR (a simulated host); implies --no-trials",
    )
    check.add_argument(
        "--no-trials",
        action="store_true",
        help="only read files: start no process in new namespaces",
    )
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        parser.error(f"--root {args.root}: not a directory")
    # Trials test the running kernel, not the files under --root: never mix the two.
    host = Host(root=root, live=root == "/" and not args.no_trials)
    return doctor(host)


if __name__ == "__main__":
    sys.exit(main())
