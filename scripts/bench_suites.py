"""The benchmark's real suites: attrs and more-itertools from their sdists (the ones
``tox -e realworld`` runs, scripts/realworld.py), timed as bench.py times its generated
workloads, plus what only a real suite shows:

* the floor of any design that forks pytest per test: a bare ``fork`` + ``_exit`` +
  ``waitpid`` of this very pytest before each test (the ``forkfloor`` plugin below);
* where ``--rootless``'s time went, from ``--rootless-stats`` (an untimed run);
* the peak memory of the whole run, plain and ``--rootless``: the sum of the proportional
  set size (PSS: a page shared by n processes counts 1/n in each) of every process of the
  run, sampled every 50 ms in an untimed run. A sum of RSS would count each page pytest
  shares with its copies once per copy.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import realworld  # a sibling script: scripts/ is sys.path[0] when bench.py runs

SUITES = ("attrs", "more-itertools")

#: A plugin that forks and reaps a child that exits at once before each test: what one
#: copy of this pytest costs (page tables, the child's exit), and nothing else.
FORK_FLOOR = """\
import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
"""

OUTCOME = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected)")


def fetch(names: list[str], workdir: Path) -> dict[str, Path]:
    """Each suite's unpacked, installed sdist (downloaded once into ``workdir``)."""
    return {name: realworld.fetch(realworld.PROJECTS[name], workdir) for name in names}


def tests_dir(name: str) -> str:
    return realworld.PROJECTS[name].tests


def write_fork_floor(directory: Path) -> None:
    (directory / "forkfloor.py").write_text(FORK_FLOOR)


def outcomes(output: str) -> dict[str, int]:
    """pytest's last summary line as counts, e.g. {"passed": 1361, "failed": 1}."""
    lines = [line for line in output.splitlines() if OUTCOME.search(line)]
    if not lines:
        return {}
    found = OUTCOME.findall(lines[-1])
    return {("error" if kind == "errors" else kind): int(n) for n, kind in found}


def ran(counts: dict[str, int]) -> int:
    """How many tests ran (what per-test figures divide by)."""
    return sum(n for kind, n in counts.items() if kind != "deselected")


def stats_lines(output: str) -> list[str]:
    """The --rootless-stats section of a run's output."""
    lines = output.splitlines()
    heads = [n for n, line in enumerate(lines) if "rootless: where the time went" in line]
    if not heads:
        return []
    section = []
    for line in lines[heads[-1] + 1 :]:
        if line.startswith("=") or (OUTCOME.search(line) and " in " in line):
            break
        section.append(line)
    return section


def _pss_of_tree(root: int) -> int:
    """PSS (bytes) summed over ``root`` and every descendant it has now. Processes that
    cannot be read (a container's init is not dumpable for other users) count nothing."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def peak_memory(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv``; the peak PSS of its process tree, and its output."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _pss_of_tree(process.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    return peak[0], output
