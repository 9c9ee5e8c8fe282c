#!/usr/bin/env python3
"""Benchmark: what an isolated test costs, next to pytest-forked and a bare ``unshare``.

One run measures, interleaved round by round on the same machine (so a load spike from
something else lands on every variant alike):

* per-test overhead of ``--rootless`` and of pytest-forked (``--forked``) over plain pytest,
  ``(wall time of the variant - wall time of plain pytest on the same files) / tests``, for
  trivial tests, for tests that each use ``tmp_path`` and import a module, and for trivial
  tests in a pytest process inflated to a given RSS (every fork copies its page tables);
* one ``unshare -Urmnpf true`` launch (util-linux), the kernel's floor for fresh namespaces;
* a ``container.run(lambda: 1)`` round trip against a bare ``fork`` + pipe round trip
  (the child writes one byte, the parent reads it and reaps), timed call by call,
  interleaved, in the same pytest process;
* the speed-up of ``-n 2`` over ``-n 0`` (pytest-xdist) on isolated tests;
* real suites, attrs and more-itertools from their sdists (see scripts/bench_suites.py):
  plain, a bare fork of pytest per test (the floor of any design that forks pytest per
  test), pytest-forked, ``--rootless`` and ``--rootless -n 2``; then, in untimed runs, where
  ``--rootless``'s time went (``--rootless-stats``) and the whole run's peak memory.

Each variant runs once per round (``--rounds``, rotating which goes first); a figure is the
median over the rounds, with the best round in parentheses. The script then checks the
speed targets (the TARGET_* constants below) and prints "met" or "NOT met" with the
numbers. It is a measurement: it exits 0 whether or not the targets are met, 1 if a run
failed (the line says FAILED with the error's first line), 2 on a usage error.

Stdlib only. It runs pytest as subprocesses of ``--python`` (default: this interpreter),
which needs pytest, pytest-rootless, pytest-forked (so pytest < 9: pytest-forked uses a
private API that pytest 9 removed) and pytest-xdist; ``tox -e bench`` provides them::

    tox -e bench                       # the full run (5 rounds)
    tox -e bench -- --quick            # fewer tests and rounds, to try it
    python scripts/bench.py --rounds 3 --rss 1G --suites none
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bench_suites

# The speed targets (README, "Performance"), as ratios measured in the same run.
TARGET_ROOTLESS_VS_FORKED = 1.0  # rootless per-test overhead <= 1.0x pytest-forked's
TARGET_RUN_VS_FORK = 2.0  # container.run() round trip <= 2x a bare fork + pipe
TARGET_XDIST_SPEEDUP = 1.3  # -n 2 at least 1.3x faster than -n 0

FULL = {"tests": 500, "tmp_tests": 200, "rss_tests": 200, "rounds": 5, "launches": 200}
FULL |= {"calls": 200}
QUICK = {"tests": 100, "tmp_tests": 50, "rss_tests": 50, "rounds": 2, "launches": 50}
QUICK |= {"calls": 50}

#: Reads the versions of what the measured interpreter has installed (None: not there).
VERSIONS = """
import importlib.metadata as md, json, platform
out = {"python": platform.python_implementation() + " " + platform.python_version()}
for name in ("pytest", "pytest-rootless", "pytest-forked", "pytest-xdist"):
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""

PYTEST_INI = "[pytest]\n"  # pins rootdir to the workload's directory; no inherited options

TRIVIAL_TEST = "def test_{i}():\n    pass\n"

TMP_PATH_HELPER = '''\
"""Imported inside each test: forked and isolated tests import it again every time."""
import json
import statistics


def write(path, values):
    path.write_text(json.dumps({"values": values, "mean": statistics.mean(values)}))


def read(path):
    return json.loads(path.read_text())
'''

TMP_PATH_TEST = """\
def test_{i}(tmp_path):
    import bench_helper

    bench_helper.write(tmp_path / "data.json", [{i}, {i} + 2])
    assert bench_helper.read(tmp_path / "data.json")["mean"] == {i} + 1
"""

# Allocated and touched page by page at session start, before any test forks, so every
# fork of this pytest process copies the page tables of that much resident memory.
RSS_CONFTEST = """\
import os

SIZE = {size}
_ballast = None


def pytest_sessionstart(session):
    global _ballast
    page = os.sysconf("SC_PAGE_SIZE")
    _ballast = bytearray(SIZE)
    _ballast[::page] = b"\\x01" * len(range(0, SIZE, page))  # fault every page in
    out = os.environ.get("BENCH_RSS_OUT")
    if out:
        with open("/proc/self/status") as status:
            rss = next(line for line in status if line.startswith("VmRSS:"))
        with open(out, "w") as f:
            f.write(str(int(rss.split()[1]) * 1024))
"""

ROUND_TRIP_TEST = """\
import json
import os
import time
from pathlib import Path

WARMUP = {warmup}
CALLS = {calls}


def bare_round_trip():
    # the floor a container.run() builds on: fork, one byte up a pipe, reap
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, b"1")
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"1"
    finally:
        os.close(r)
    os.waitpid(pid, 0)


def test_round_trip(container):
    one = lambda: 1  # noqa: E731
    for _ in range(WARMUP):
        assert container.run(one) == 1
        bare_round_trip()
    run = bare = 0.0
    for _ in range(CALLS):  # call by call, so both see the same load
        t0 = time.perf_counter()
        assert container.run(one) == 1
        t1 = time.perf_counter()
        bare_round_trip()
        t2 = time.perf_counter()
        run += t1 - t0
        bare += t2 - t1
    out = {{"run": run / CALLS, "bare": bare / CALLS}}
    Path(os.environ["BENCH_ROUND_TRIP_OUT"]).write_text(json.dumps(out))
"""


def busy_cpu_seconds() -> float:
    """The machine's busy CPU time so far, every CPU's (proc_stat(5): the first line's
    user, nice, system, irq, softirq and steal). System-wide, because
    getrusage(RUSAGE_CHILDREN) counts a process only if every parent up the line waited
    for it, and never the kernel threads that tear the namespaces down: on 500 trivial
    --rootless tests it counted 12 ms of CPU a test where perf counted 18 over the
    machine (docs/performance.md). The machine is otherwise quiet during the bench."""
    with open("/proc/stat") as f:
        fields = [int(n) for n in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Variant:
    """One command timed once per round."""

    key: str  # "<workload>/<variant>"
    label: str
    argv: list[str]
    cwd: Path | None = None
    expect: int = 0  # tests that must pass (pytest), launches (unshare)
    extra_env: dict[str, str] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)  # round trip figures
    #: CPU seconds the machine was busy during each counted run, as ``times`` (see
    #: busy_cpu_seconds)
    cpu: list[float] = field(default_factory=list)
    error: str | None = None
    suite: bool = False  # a real suite: some of its tests may fail, as they do plainly


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (like 200M or 1G)")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match[2].upper()]
    return int(float(match[1]) * scale)


def size_label(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def rss_name(size: int) -> str:
    """The workload's name (and directory) for pytest inflated to ``size`` bytes."""
    return "rss-" + size_label(size).replace(" ", "")


def ms(seconds: float) -> str:
    value = seconds * 1000
    if abs(value) >= 10:
        return f"{value:.1f} ms"
    if abs(value) >= 1:
        return f"{value:.2f} ms"
    return f"{value:.3f} ms"


def signed_ms(seconds: float) -> str:
    return ("+" if seconds >= 0 else "-") + ms(abs(seconds))


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def first_error_line(output: str) -> str:
    """The line a reader needs first: pytest's ``E`` line, else an error, else the last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pick in (
        lambda s: s.startswith("E "),
        lambda s: s.startswith(("FAILED ", "ERROR ")),  # pytest's short test summary
        lambda s: re.search(r"\b\w*(Error|Exception)\b", s) is not None,
    ):
        for line in lines:
            if pick(line):
                return line[:200]
    return lines[-1][:200] if lines else "(no output)"


def write_workloads(root: Path, args: argparse.Namespace, sizes: list[int]) -> dict[str, int]:
    """The test directories, each its own rootdir; returns workload -> number of tests."""

    def make(name: str, files: dict[str, str]) -> None:
        (root / name).mkdir()
        for filename, text in {"pytest.ini": PYTEST_INI, **files}.items():
            (root / name / filename).write_text(text)

    make(
        "trivial", {"test_trivial.py": "".join(TRIVIAL_TEST.format(i=i) for i in range(args.tests))}
    )
    make(
        "tmp_path",
        {
            "bench_helper.py": TMP_PATH_HELPER,
            "test_tmp_path.py": "\n\n".join(
                TMP_PATH_TEST.format(i=i) for i in range(args.tmp_tests)
            ),
        },
    )
    counts = {"trivial": args.tests, "tmp_path": args.tmp_tests}
    for size in sizes:
        name = rss_name(size)
        make(
            name,
            {
                "conftest.py": RSS_CONFTEST.format(size=size),
                "test_rss.py": "".join(TRIVIAL_TEST.format(i=i) for i in range(args.rss_tests)),
            },
        )
        counts[name] = args.rss_tests
    make(
        "round_trip",
        {
            "test_round_trip.py": ROUND_TRIP_TEST.format(
                warmup=max(5, args.calls // 10), calls=args.calls
            )
        },
    )
    counts["round_trip"] = 1
    return counts


def run_variant(v: Variant, env: dict[str, str], results: Path) -> float | None:
    """Time one run of ``v``; on failure set ``v.error`` and return None."""
    run_env = env | v.extra_env
    if v.key == "unshare":
        start = time.perf_counter()
        for _ in range(v.expect):
            done = subprocess.run(
                v.argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                v.error = f"exit {done.returncode}: {first_error_line(done.stderr)}"
                return None
        return time.perf_counter() - start
    start = time.perf_counter()
    done = subprocess.run(
        v.argv,
        cwd=v.cwd,
        env=run_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    passed = re.findall(r"(\d+) passed", done.stdout)
    if v.suite:  # as many tests as plain pytest ran, whatever their outcomes
        count = bench_suites.ran(bench_suites.outcomes(done.stdout))
        passed = [str(v.expect)] if done.returncode in (0, 1) and count == v.expect else []
    if (done.returncode != 0 and not v.suite) or not passed or int(passed[-1]) != v.expect:
        summary = (done.stdout.strip().splitlines()[-1:] or ["(no output)"])[0].strip("= ")
        first = first_error_line(done.stdout)
        v.error = f"exit {done.returncode}, {summary}" + (f": {first}" if first != summary else "")
        return None
    if v.key == "round_trip":
        out = results / "round_trip.json"
        v.samples.append(json.loads(out.read_text()))
        out.unlink()
    return elapsed


# The design's floor, outside pytest, in one process inflated to the given RSS, against a
# bare fork + exit + wait (what pytest-forked does per test):
# * "built": an empty container built when its test comes (--rootless-no-prepare): a clone
#   of the process into new namespaces, its root built, init's fork of the test process;
# * "prepared": one test after another in empty prepared containers, the next container
#   cloned from the zygote while the current test runs (as in a run): what is left per test
#   on one core and what the other core does meanwhile.
# Whatever pytest does in the forked test process costs the same in all three.
FLOOR = r"""
import json, os, sys, time
from pytest_rootless.protocol import framing
from pytest_rootless.protocol.messages import Result
from pytest_rootless.runtime import prepared as prepared_containers
from pytest_rootless.runtime.options import Options
from pytest_rootless.runtime.session import ContainerSession

size, count = int(sys.argv[1]), int(sys.argv[2])
ballast = bytearray(size)
for i in range(0, size, 4096):
    ballast[i] = 1
containers = ContainerSession()
spec = containers.spec(Options(), [os.getcwd()])
crash = containers.crash_channel()


def bare_fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def built():
    outcome = containers.run(spec, lambda fd: 0, lambda message: None)
    assert outcome.status == 0, outcome


def done(fd):  # what a test process sends last
    framing.send(fd, {"kind": Result.DONE, "status": 0})
    return 0


builder = prepared_containers.Builder()
zygote = prepared_containers.Zygote(builder, lambda job, ack_fd: done, containers.keep())
key = "floor"
ack_r, ack_w = os.pipe()
zygote.prepare(key, spec)


def prepared():
    outcome = prepared_containers.run_prepared(
        zygote, key, spec, {}, ack_r, lambda message: None, crash, containers.reaper,
        then=lambda: zygote.prepare(key, spec),
    )
    assert outcome is not None and outcome.status == 0, outcome


times = {"fork": [], "built": [], "prepared": []}
for round in range(count + 5):
    for key_, fn in (("fork", bare_fork), ("built", built)):
        began = time.perf_counter()
        fn()
        if round >= 5:  # warm-up
            times[key_].append(time.perf_counter() - began)
# prepared containers one after another, as tests come: time per test over the series
for round in range(5):
    prepared()
began = time.perf_counter()
for round in range(count):
    prepared()
times["prepared"] = [(time.perf_counter() - began) / count]
zygote.close()
builder.close()
containers.close()
print(json.dumps({key_: sorted(v)[len(v) // 2] for key_, v in times.items()}))
"""


def measure_floor(python: str, size: int, count: int) -> dict[str, float] | str:
    """Median seconds of a bare fork and of an empty container at ``size`` bytes of RSS
    (0: pytest's own size), or the error's first line."""
    done = subprocess.run(
        [python, "-c", FLOOR, str(size), str(count)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return first_error_line(done.stderr or done.stdout)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer tests and rounds")
    parser.add_argument("--rounds", type=int, help="rounds of every variant (5; quick: 2)")
    parser.add_argument("--tests", type=int, help="trivial tests (500; quick: 100)")
    parser.add_argument("--tmp-tests", type=int, help="tmp_path tests (200; quick: 50)")
    parser.add_argument("--rss-tests", type=int, help="tests per inflated run (200; quick: 50)")
    parser.add_argument(
        "--rss", default="512M", help="RSS sizes to inflate pytest to (default 512M)"
    )
    parser.add_argument(
        "--suites",
        default=",".join(bench_suites.SUITES),
        help=f"real suites to run, or none (default {','.join(bench_suites.SUITES)})",
    )
    parser.add_argument(
        "--suites-dir",
        type=Path,
        default=Path(__file__).resolve().parents[1] / ".tox" / "bench-suites",
        help="where their sdists are downloaded and unpacked (kept between runs)",
    )
    parser.add_argument("--launches", type=int, help="unshare launches a round (200; quick: 50)")
    parser.add_argument("--calls", type=int, help="container.run() calls a round (200; quick: 50)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to measure")
    parser.add_argument("--keep", action="store_true", help="keep the generated directory")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        sizes = sorted({parse_size(s) for s in args.rss.split(",") if s.strip()})
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--rss: {exc}")
    args.suites = [s for s in args.suites.split(",") if s.strip() and s.strip() != "none"]
    unknown = set(args.suites) - set(bench_suites.SUITES)
    if unknown:
        parser.error(f"--suites: unknown {sorted(unknown)}: choose from {bench_suites.SUITES}")

    probe = subprocess.run(
        [args.python, "-c", VERSIONS], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        parser.error(f"--python {args.python}: {first_error_line(probe.stderr)}")
    versions: dict[str, str | None] = json.loads(probe.stdout)
    for needed in ("pytest", "pytest-rootless"):
        if versions[needed] is None:
            parser.error(f"{needed} is not installed for {args.python}")

    work = Path(tempfile.mkdtemp(prefix="rootless-bench-"))
    results = work / "results"
    results.mkdir()
    (work / "basetemp").mkdir()
    try:
        return measure(args, sizes, versions, work, results)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def measure(
    args: argparse.Namespace,
    sizes: list[int],
    versions: dict[str, str | None],
    work: Path,
    results: Path,
) -> int:
    counts = write_workloads(work, args, sizes)
    stages: dict[str, list[str]] = {}
    memory: dict[str, dict[str, int]] = {"plain": {}, "rootless": {}}
    # Each variant loads exactly the plugins it measures, whatever else is installed.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    base = [args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    rootless = ["-p", "rootless", "--rootless", "--rootless-require"]
    kinds = {
        "plain": ("plain pytest", []),
        "forked": ("pytest-forked", ["-p", "pytest_forked", "--forked"]),
        "rootless": ("--rootless", rootless),
    }

    variants: list[Variant] = []

    def add(
        key: str, workload: str, label: str, extra: list[str], extra_env: dict[str, str]
    ) -> None:
        basetemp = work / "basetemp" / key.replace("/", "-")
        argv = [*base, *extra, f"--basetemp={basetemp}", "."]
        variants.append(Variant(key, label, argv, work / workload, counts[workload], extra_env))

    rss_out = {rss_name(size): str(results / rss_name(size)) for size in sizes}
    for workload in ("trivial", "tmp_path", *rss_out):
        for kind, (label, extra) in kinds.items():
            env_extra = {"BENCH_RSS_OUT": rss_out[workload]} if workload in rss_out else {}
            add(f"{workload}/{kind}", workload, label, extra, env_extra)
    round_trip_out = {"BENCH_ROUND_TRIP_OUT": str(results / "round_trip.json")}
    add("round_trip", "round_trip", "container.run()", ["-p", "rootless"], round_trip_out)
    add("trivial/n0", "trivial", "--rootless -n 0", ["-p", "xdist", *rootless, "-n", "0"], {})
    add("trivial/n2", "trivial", "--rootless -n 2", ["-p", "xdist", *rootless, "-n", "2"], {})
    suites = add_suites(args, work, env, rootless, variants)
    unshare_path = shutil.which("unshare")
    unshare = Variant(
        "unshare", "unshare -Urmnpf true", [unshare_path or "unshare", "-Urmnpf", "true"]
    )
    unshare.expect = args.launches
    variants.append(unshare)

    if unshare_path is None:
        unshare.error = "unshare (util-linux) is not on PATH"
    for v in variants:
        if "-p" in v.argv:
            plugins = {v.argv[i + 1] for i, a in enumerate(v.argv[:-1]) if a == "-p"}
            if "pytest_forked" in plugins and versions["pytest-forked"] is None:
                v.error = f"pytest-forked is not installed for {args.python}"
            if "xdist" in plugins and versions["pytest-xdist"] is None:
                v.error = f"pytest-xdist is not installed for {args.python}"

    load_start = os.getloadavg()
    # Warm-up, not counted: bytecode of the generated files, the page cache.
    for v in variants:
        if v.key.endswith("/plain") and not v.suite and run_variant(v, env, results) is None:
            print(f"warm-up failed: {v.key}: {v.error}", file=sys.stderr)
            return 1
    began = time.monotonic()
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            if v.error is not None:
                continue
            used = busy_cpu_seconds()
            elapsed = run_variant(v, env, results)
            if elapsed is not None:  # a counted round: its wall and CPU time, paired
                v.times.append(elapsed)
                v.cpu.append(busy_cpu_seconds() - used)
            status = f"{elapsed:.2f} s" if elapsed is not None else f"FAILED: {v.error}"
            print(f"round {r + 1}/{args.rounds}  {v.key:<22} {status}", file=sys.stderr)
    load_end = os.getloadavg()

    floors = {size: measure_floor(args.python, size, args.calls) for size in [0, *sizes]}
    for name, source in suites.items():  # untimed: where the time went, and memory
        suite_env = env | {"PYTHONPATH": str(work / "plugins")}
        memory["plain"][name], _ = bench_suites.peak_memory(
            [*base, bench_suites.tests_dir(name)], source, suite_env
        )
        isolated = [*base, *rootless, "--rootless-stats", bench_suites.tests_dir(name)]
        memory["rootless"][name], output = bench_suites.peak_memory(isolated, source, suite_env)
        stages[name] = bench_suites.stats_lines(output)
    report(args, sizes, versions, variants, counts, results, load_start, load_end, began)
    report_suites(suites, variants, stages, memory)
    print()
    print("the design's floor: a test in an empty container against a bare fork + exit + wait")
    print("  built: the container built when its test comes (--rootless-no-prepare)")
    print(
        "  prepared: one test after another, the next container prepared meanwhile "
        "(time per test over the series, not the median of one)"
    )
    print_by_size(
        floors,
        lambda f: (
            f"fork {ms(f['fork'])}; built {ms(f['built'])}: "
            f"{ratio(f['built'], f['fork']):.2f}x; prepared {ms(f['prepared'])}: "
            f"{ratio(f['prepared'], f['fork']):.2f}x"
        ),
    )
    return (
        1
        if any(v.error for v in variants) or any(isinstance(f, str) for f in floors.values())
        else 0
    )


def print_by_size(
    results: dict[int, dict[str, float] | str], line: Callable[[dict[str, float]], str]
) -> None:
    """One line per RSS size: its figures (``line``), or why they are missing."""
    for size, figures in results.items():
        where = f"RSS {size_label(size)}" if size else "a small process"
        text = f"FAILED: {figures}" if isinstance(figures, str) else line(figures)
        print(f"  {where:<18} {text}")


def add_suites(
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    rootless: list[str],
    variants: list[Variant],
) -> dict[str, Path]:
    """The real suites' variants (their sdists fetched and installed first); returns each
    suite's directory. Each variant must run as many tests as plain pytest did."""
    if not args.suites:
        return {}
    plugins = work / "plugins"
    plugins.mkdir()
    bench_suites.write_fork_floor(plugins)
    suites = bench_suites.fetch(args.suites, args.suites_dir)
    base = [args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    kinds = {
        "plain": ("plain pytest", []),
        "floor": ("fork + exit", ["-p", "forkfloor"]),
        "forked": ("pytest-forked", ["-p", "pytest_forked", "--forked"]),
        "rootless": ("--rootless", rootless),
        "n2": ("--rootless -n 2", ["-p", "xdist", *rootless, "-n", "2"]),
    }
    suite_env = {"PYTHONPATH": str(plugins)}
    for name, source in suites.items():
        tests = bench_suites.tests_dir(name)
        warm = subprocess.run(
            [*base, tests], cwd=source, env=env | suite_env, capture_output=True, text=True
        )
        count = bench_suites.ran(bench_suites.outcomes(warm.stdout))
        for kind, (label, extra) in kinds.items():
            basetemp = work / "basetemp" / f"{name}-{kind}"
            argv = [*base, *extra, f"--basetemp={basetemp}", tests]
            v = Variant(f"{name}/{kind}", label, argv, source, count, suite_env, suite=True)
            if warm.returncode not in (0, 1) or not count:
                v.error = f"plain pytest: exit {warm.returncode}: {first_error_line(warm.stdout)}"
            variants.append(v)
    return suites


#: Below this per-test overhead a ratio to it says nothing (within the rounds' noise).
NOISE = 0.0005


def overhead_ratio(a: float, b: float) -> str:
    """``a``/``b`` as "1.30x", or why not: a run that forks per test can even be faster
    than plain pytest (each test's garbage goes with its process)."""
    return f"{ratio(a, b):.2f}x" if b > NOISE else "n/a (the second is within noise of plain)"


def _suite_cells(v: Variant, plain: Variant, per: dict[str, float], kind: str) -> list[str]:
    """A real-suite variant's wall time, overhead, CPU a test over plain and how many CPUs
    it kept busy (its overhead goes into ``per``)."""
    if v.error or not v.times or not plain.times:
        return [f"FAILED: {v.error}", "", "", ""]
    w = statistics.median(v.times)
    busy = statistics.median(c / t for c, t in zip(v.cpu, v.times, strict=True))
    cells = [f"{w:.2f} s ({min(v.times):.2f} s)", "", "", f"{busy:.2f}"]
    if kind != "plain":
        per[kind] = (w - statistics.median(plain.times)) / v.expect
        cpu = (statistics.median(v.cpu) - statistics.median(plain.cpu)) / v.expect
        cells[1:3] = [signed_ms(per[kind]), signed_ms(cpu)]
    return cells


def report_suites(
    suites: dict[str, Path],
    variants: list[Variant],
    stages: dict[str, list[str]],
    memory: dict[str, dict[str, int]],
) -> None:
    """The real suites' table, where --rootless's time went, and peak memory."""
    if not suites:
        return
    by_key = {v.key: v for v in variants}
    verdicts: list[tuple[bool, str]] = []
    print()
    print("real suites (sdists; plain pytest's outcomes in every variant):")
    # CPU: the machine's busy time during the run (busy_cpu_seconds).
    row = "{:<26} {:<16} {:>17} {:>18} {:>16} {:>10}"
    print(
        row.format("suite", "variant", "wall time", "overhead per test", "CPU a test", "CPUs busy")
    )
    for name in suites:
        plain = by_key[f"{name}/plain"]
        title = f"{name}, {plain.expect} tests"
        per: dict[str, float] = {}
        for kind in ("plain", "floor", "forked", "rootless", "n2"):
            v = by_key[f"{name}/{kind}"]
            print(row.format(title, v.label, *_suite_cells(v, plain, per, kind)))
            title = ""
        if {"rootless", "forked", "floor"} <= per.keys():
            print(
                f"{'':<26} rootless/forked {overhead_ratio(per['rootless'], per['forked'])}, "
                f"rootless/fork floor {overhead_ratio(per['rootless'], per['floor'])}, "
                f"forked/fork floor {overhead_ratio(per['forked'], per['floor'])}"
            )
        n0, n2 = by_key[f"{name}/rootless"], by_key[f"{name}/n2"]
        if n0.times and n2.times:
            speedup = ratio(statistics.median(n0.times), statistics.median(n2.times))
            print(f"{'':<26} -n 2 against -n 0, both --rootless: {speedup:.2f}x faster")
            # -n 2 cannot take less than its CPU spread over every CPU of the machine.
            bound = statistics.median(n0.times) / (
                statistics.median(n2.cpu) / (os.cpu_count() or 1)
            )
            print(f"{'':<26} -n 2's CPU on {os.cpu_count()} CPUs: at most {bound:.2f}x faster")
            verdicts.append(
                (
                    speedup >= TARGET_XDIST_SPEEDUP,
                    f"{name}: -n 2 at least "
                    f"{TARGET_XDIST_SPEEDUP}x faster than -n 0: {speedup:.2f}x",
                )
            )
        if {"rootless", "forked"} <= per.keys():
            verdicts.append(
                (
                    per["rootless"] <= TARGET_ROOTLESS_VS_FORKED * per["forked"],
                    f"{name}: rootless per-test "
                    f"overhead <= {TARGET_ROOTLESS_VS_FORKED:.1f}x pytest-forked's: "
                    f"{overhead_ratio(per['rootless'], per['forked'])} "
                    f"({signed_ms(per['rootless'])} against {signed_ms(per['forked'])})",
                )
            )
    for name in suites:
        print()
        print(f"where --rootless's time went on {name} (--rootless-stats, an untimed run):")
        for line in stages.get(name) or ["(no --rootless-stats section in the output)"]:
            print(f"  {line}")
    print()
    print("peak memory of the whole run (PSS of every process, sampled every 50 ms):")
    for name in suites:
        plain_pss, isolated_pss = memory["plain"].get(name, 0), memory["rootless"].get(name, 0)
        print(
            f"  {name:<16} plain {size_label(plain_pss)}, --rootless {size_label(isolated_pss)}: "
            f"{ratio(isolated_pss, plain_pss):.2f}x"
        )
    print()
    print("targets on the real suites (median rounds):")
    for ok, text in verdicts:
        print(f"  {'met    ' if ok else 'NOT met'}  {text}")


def report(
    args: argparse.Namespace,
    sizes: list[int],
    versions: dict[str, str | None],
    variants: list[Variant],
    counts: dict[str, int],
    results: Path,
    load_start: tuple[float, float, float],
    load_end: tuple[float, float, float],
    began: float,
) -> None:
    by_key = {v.key: v for v in variants}
    try:  # "always [madvise] never": with "always", a big heap may fork with huge pages
        found = re.search(
            r"\[(\w+)\]", Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        )
    except OSError:
        found = None
    thp = found[1] if found else "?"
    plugins = ", ".join(
        f"{name} {versions[name] or 'not installed'}"
        for name in ("pytest", "pytest-rootless", "pytest-forked", "pytest-xdist")
    )
    print()
    print(
        f"pytest-rootless benchmark: {args.rounds} round(s), interleaved, "
        f"{time.monotonic() - began:.0f} s; median of the rounds (best round)"
    )
    print(
        f"host: Linux {platform.release()}, {os.cpu_count()} CPUs, uid {os.getuid()}, "
        f"transparent hugepages {thp}; load average {load_start[0]:.1f} at start, "
        f"{load_end[0]:.1f} at end"
    )
    print(f"measured: {versions['python']}, {plugins}")
    print()

    def wall(v: Variant) -> tuple[float, float] | None:
        return (statistics.median(v.times), min(v.times)) if v.times and not v.error else None

    def failed(v: Variant) -> str:
        return f"FAILED: {v.error}"

    unshare = by_key["unshare"]
    per_launch = None
    if (w := wall(unshare)) is not None:
        per_launch = (w[0] / unshare.expect, w[1] / unshare.expect)

    row = "{:<34} {:<15} {:>17} {:>22}"
    print(row.format("workload", "variant", "wall time", "overhead per test"))
    # workload -> kind -> (median, best) per-test overhead
    overheads: dict[str, dict[str, tuple[float, float]]] = {}
    titles = {
        "trivial": f"{counts['trivial']} trivial tests",
        "tmp_path": f"{counts['tmp_path']} tests with tmp_path + import",
    }
    for size in sizes:
        titles[rss_name(size)] = f"{counts[rss_name(size)]} trivial tests, RSS {size_label(size)}"
    for workload, title in titles.items():
        plain = wall(by_key[f"{workload}/plain"])
        overheads[workload] = {}
        for kind in ("plain", "forked", "rootless"):
            v = by_key[f"{workload}/{kind}"]
            w = wall(v)
            if w is None:
                print(f"{title:<34} {v.label:<15} {failed(v)}")
            elif kind == "plain" or plain is None:
                print(row.format(title, v.label, f"{w[0]:.2f} s ({w[1]:.2f} s)", ""))
            else:
                n = counts[workload]
                per_test = ((w[0] - plain[0]) / n, (w[1] - plain[1]) / n)
                overheads[workload][kind] = per_test
                text = f"{signed_ms(per_test[0])} ({signed_ms(per_test[1])})"
                print(row.format(title, v.label, f"{w[0]:.2f} s ({w[1]:.2f} s)", text))
            title = ""
        o = overheads[workload]
        if "rootless" in o and "forked" in o:
            line = (
                f"rootless/forked {ratio(o['rootless'][0], o['forked'][0]):.2f}x "
                f"({ratio(o['rootless'][1], o['forked'][1]):.2f}x)"
            )
            if per_launch is not None:
                line += (
                    f", rootless/unshare {ratio(o['rootless'][0], per_launch[0]):.2f}x "
                    f"({ratio(o['rootless'][1], per_launch[1]):.2f}x)"
                )
            print(f"{'':<34} {line}")
        if workload in titles and (results / workload).exists():
            got = int((results / workload).read_text())
            print(f"{'':<34} (pytest's RSS after inflating it: {size_label(got)})")
    print()
    if per_launch is not None:
        print(
            f"unshare -Urmnpf true: {ms(per_launch[0])} a launch ({ms(per_launch[1])}), "
            f"{unshare.expect} launches a round"
        )
    else:
        print(f"unshare -Urmnpf true: {failed(unshare)}")

    rt = by_key["round_trip"]
    rt_ratio = None
    if rt.samples and not rt.error:
        run = statistics.median(s["run"] for s in rt.samples)
        bare = statistics.median(s["bare"] for s in rt.samples)
        run_best = min(s["run"] for s in rt.samples)
        bare_best = min(s["bare"] for s in rt.samples)
        rt_ratio = (ratio(run, bare), ratio(run_best, bare_best))
        print(
            f"container.run(lambda: 1): {ms(run)} ({ms(run_best)}); bare fork + pipe: "
            f"{ms(bare)} ({ms(bare_best)}); ratio {rt_ratio[0]:.2f}x ({rt_ratio[1]:.2f}x), "
            f"{args.calls} calls a round"
        )
    else:
        print(f"container.run(lambda: 1): {failed(rt)}")

    n0, n2 = by_key["trivial/n0"], by_key["trivial/n2"]
    speedup = None
    if (w0 := wall(n0)) is not None and (w2 := wall(n2)) is not None:
        speedup = (ratio(w0[0], w2[0]), ratio(w0[1], w2[1]))
        print(
            f"-n 2 on {counts['trivial']} isolated tests: {w2[0]:.2f} s ({w2[1]:.2f} s) "
            f"against -n 0 {w0[0]:.2f} s ({w0[1]:.2f} s): {speedup[0]:.2f}x ({speedup[1]:.2f}x)"
        )
        # Its floor: what -n 0 leaves of the machine. The busy CPU time over the wall
        # time is how many CPUs -n 0 keeps busy (containers are prepared on one while
        # the test runs on another); -n 2 can at best fill the rest.
        busy = statistics.median(c / t for c, t in zip(n0.cpu, n0.times, strict=True))
        cpus = os.cpu_count() or 1
        per_test = 1000 * statistics.median(n0.cpu) / counts["trivial"]
        print(
            f"  -n 0 keeps {busy:.2f} of {cpus} CPUs busy ({per_test:.1f} ms of CPU a test): "
            f"-n 2 can be at most {cpus / busy:.2f}x faster on this machine"
        )
    else:
        print(
            f"-n 2 on {counts['trivial']} isolated tests: {failed(n2 if n0.error is None else n0)}"
        )

    print()
    print("targets (median rounds):")

    def target(ok: bool | None, text: str) -> None:
        verdict = "FAILED " if ok is None else "met    " if ok else "NOT met"
        print(f"  {verdict}  {text}")

    def vs_forked(workload: str, what: str) -> None:
        o = overheads.get(workload, {})
        name = (
            f"rootless per-test overhead <= {TARGET_ROOTLESS_VS_FORKED:.1f}x "
            f"pytest-forked's, {what}"
        )
        if "rootless" in o and "forked" in o:
            r = ratio(o["rootless"][0], o["forked"][0])
            target(
                r <= TARGET_ROOTLESS_VS_FORKED,
                f"{name}: {r:.2f}x ({ms(o['rootless'][0])} against {ms(o['forked'][0])})",
            )
        else:
            target(None, f"{name}: not measured")

    vs_forked("trivial", f"{counts['trivial']} trivial tests")
    if sizes:
        big = max(sizes)
        vs_forked(rss_name(big), f"RSS {size_label(big)}")
    name = f"container.run() round trip <= {TARGET_RUN_VS_FORK:.0f}x a bare fork + pipe"
    if rt_ratio is not None:
        target(rt_ratio[0] <= TARGET_RUN_VS_FORK, f"{name}: {rt_ratio[0]:.2f}x")
    else:
        target(None, f"{name}: not measured")
    name = (
        f"-n 2 at least {TARGET_XDIST_SPEEDUP}x faster than -n 0 "
        f"on {counts['trivial']} isolated tests"
    )
    if speedup is not None:
        target(speedup[0] >= TARGET_XDIST_SPEEDUP, f"{name}: {speedup[0]:.2f}x")
    else:
        target(None, f"{name}: not measured")


if __name__ == "__main__":
    sys.exit(main())
