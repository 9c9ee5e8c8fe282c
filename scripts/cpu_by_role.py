"""Where the CPU of isolated tests goes, by process role: ``perf record -a`` over a run of
trivial tests, its samples counted by process name (the builder, the zygote, a relay and
init name themselves ``rootless-*``; the host and the test processes keep pytest's). The
zygote's count holds its launchers' and each test process's until the test process takes
pytest's name back, at the end of its isolation.

    python scripts/cpu_by_role.py [--tests 500] [-- pytest options...]

The pytest options replace the default ``--rootless`` (``-- --forked`` measures
pytest-forked, ``-- -p no:rootless`` plain pytest). Needs ``perf`` (linux-perf) and the
right to sample every CPU (root, or kernel.perf_event_paranoid <= 0). A test process is
told from the host by its pid: the host is the process with the most samples under
pytest's name. Under pytest-xdist the workers have pytest's name too and count as test
processes: only the total is right there.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FREQUENCY = 2000  # samples a second on each CPU: one sample is 0.5 ms of CPU


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("pytest_args", nargs="*", default=["--rootless"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        here = Path(work)
        (here / "test_trivial.py").write_text(
            "import pytest\n\n"
            f"@pytest.mark.parametrize('n', range({args.tests}))\n"
            "def test_trivial(n):\n    pass\n"
        )
        data = here / "perf.data"
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "rootless"]
        perf = ["perf", "record", "-q", "-a", "-F", str(FREQUENCY), "-o", str(data), "--"]
        subprocess.run([*perf, *pytest, *args.pytest_args], cwd=here, check=True)
        script = ["perf", "script", "-i", str(data), "-F", "comm,pid"]
        samples = subprocess.run(script, capture_output=True, text=True, check=True).stdout
    print_roles(samples.splitlines(), args.tests)
    return 0


def print_roles(lines: list[str], tests: int) -> None:
    """Milliseconds of CPU a test, by role, from ``perf script -F comm,pid`` lines."""
    by_process: collections.Counter[tuple[str, int]] = collections.Counter()
    for line in lines:
        name, _, pid = line.strip().rpartition(" ")  # a name may hold spaces
        if pid.isdigit():
            by_process[name.strip(), int(pid)] += 1
    pytest_name = os.path.basename(sys.executable)[:15]  # what the kernel names it
    ours = [p for p in by_process if p[0] == pytest_name]
    if not ours:
        raise SystemExit(f"perf recorded no sample of {pytest_name!r}: may it sample?")
    host = max(ours, key=by_process.__getitem__)
    roles: collections.Counter[str] = collections.Counter()
    for (name, pid), count in by_process.items():
        if (name, pid) == host:
            role = "host (pytest)"
        elif name.startswith(("rootless-", "swapper")):
            role = name
        elif name == pytest_name:
            role = "test processes"
        else:
            role = "other (kernel threads, perf)"
        roles[role] += count
    per_test = 1000 / FREQUENCY / tests
    busy = sum(n for role, n in roles.items() if role != "swapper")
    for role, count in roles.most_common():
        label = "idle" if role == "swapper" else role
        print(f"{label:28s} {count * per_test:6.2f} ms a test")
    print(f"{'busy, all roles':28s} {busy * per_test:6.2f} ms a test ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    sys.exit(main())
