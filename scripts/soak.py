#!/usr/bin/env python3
"""Soak: thousands of isolated tests in ONE pytest session, watching pytest for leaks.

Writes a test file of ``--count`` tests (a repeating mix: trivial; ``tmp_path``; a
background child left running; a double-forked ``setsid`` daemon left running; a
failing test; a test driving a live ``container`` that leaves a daemon), runs it in one
``pytest -p rootless`` subprocess, and has a small conftest plugin sample pytest's own
process every ``--every`` tests, on the host side:

* its open fds (``/proc/self/fd``): flat, or it fails;
* its RSS (``VmRSS`` of ``/proc/self/status``, after a ``gc.collect()``), from the sample
  after ``--warmup`` tests (the first tests import, fill caches and prepare the root) to
  the last. pytest keeps every ``TestReport`` for its summary; the sampler empties that
  store as tests finish (``--keep-reports`` leaves it). pytest also keeps a little per
  test of its own (ids of reported tests, each item's cached node id and location): a
  control session of as many plain tests, without the plugin, measures that, and the
  runtime's share (growth minus the control's) must stay under ``--max-growth`` percent;
* its zombie children: finished containers are reaped lazily (``runtime.launch.Reaper``, at most
  ``MAX_PENDING`` waiting), so a few may exist mid-run, never more, and none once the
  session has ended;
* leftover container processes: every process a test starts carries ``<token>-<index>``
  in its argv; one from a test finished two or more tests earlier is a leftover, and so
  is any process carrying the token (argv or environment) at the end of the session and
  once pytest has exited (polled for a few seconds).

Prints a table and the figures, then exits 1 if any condition fails (0 otherwise, 2 on a
usage error). Stdlib and pytest only; the plugin under test must be importable::

    python scripts/soak.py                                        # 5000 tests
    python scripts/soak.py --count 300 --every 50 --warmup 50     # the suite's short one
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

#: What each test of the cycle does; test ``i`` is of kind ``KINDS[i % len(KINDS)]``.
KINDS = ("trivial", "tmp_path", "child", "daemon", "failing", "live")

TEST_FILE = """
import os, subprocess, time
import pytest

TOKEN = os.environ["SOAK_TOKEN"]


def _left(index, detach):
    tag = f"{TOKEN}-{index}-"
    # "sleep; true" keeps sh alive (no exec of the last command) with the tag as its $0
    if detach:  # double fork + setsid: the shape of a daemon escaping its parent
        subprocess.run(["sh", "-c", f"setsid sh -c 'sleep 300; true' {tag} "
                        "</dev/null >/dev/null 2>&1 &"], check=True)
    else:
        subprocess.Popen(["sh", "-c", "sleep 300; true", tag])


@pytest.mark.isolated
@pytest.mark.parametrize("index", range(0, COUNT, 6))
def test_trivial(index):
    assert index >= 0


@pytest.mark.isolated
@pytest.mark.parametrize("index", range(1, COUNT, 6))
def test_tmp_path(index, tmp_path):
    (tmp_path / "data").write_text(str(index))
    assert (tmp_path / "data").read_text() == str(index)


@pytest.mark.isolated
@pytest.mark.parametrize("index", range(2, COUNT, 6))
def test_child(index):
    _left(index, detach=False)


@pytest.mark.isolated
@pytest.mark.parametrize("index", range(3, COUNT, 6))
def test_daemon(index):
    _left(index, detach=True)


@pytest.mark.isolated
@pytest.mark.parametrize("index", range(4, COUNT, 6))
def test_failing(index):
    assert index < 0, "this test fails on purpose"


@pytest.mark.parametrize("index", range(5, COUNT, 6))
def test_live(index, container):
    container.start(_left, index, True).wait(30)
    assert container.run(lambda: index) == index
"""

#: The control session: as many tests, plain, without the plugin.
CONTROL_FILE = """
import pytest

@pytest.mark.parametrize("index", range(COUNT))
def test_plain(index):
    assert index % 6 != 4, "this test fails on purpose"
"""

CONFTEST = '''
import gc, json, os, time
import pytest

PYTEST_PID = os.getpid()
TOKEN = os.environ["SOAK_TOKEN"]
EVERY = int(os.environ["SOAK_EVERY"])
KEEP_REPORTS = os.environ.get("SOAK_KEEP_REPORTS") == "1"
OUT = open(os.environ["SOAK_SAMPLES"], "a", buffering=1)
finished = 0
outcomes = {}


def _processes():
    """(pid, ppid, state, argv, environ) of every process we may read."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read()
        except OSError:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            environ = b""
        yield int(name), int(fields[1]), fields[0].decode(), argv, environ


def _tag_index(argv):
    mark = TOKEN.encode() + b"-"
    at = argv.find(mark)
    if at < 0:
        return None
    digits = argv[at + len(mark):].split(b"-", 1)[0]
    return int(digits) if digits.isdigit() else None


def sample(at):
    links = []
    for name in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            pass  # the listing's own, closed by now
    # A pidfd (pidfd_open(2)) per prepared container being torn down, held until it is
    # gone (at most Reaper.MAX_PENDING): counted apart, they come and go.
    pidfds = links.count("anon_inode:[pidfd]")
    fds = len(links) - pidfds
    gc.collect()  # what is kept, not garbage the collector has not reached yet
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    children = zombies = 0
    stale = []
    tagged = []
    for pid, ppid, state, argv, environ in _processes():
        if pid == PYTEST_PID:
            continue
        if ppid == PYTEST_PID:
            children += 1
            zombies += state == "Z"
        index = _tag_index(argv)
        if index is not None:
            tagged.append(pid)
            if at is not None and index < at - 2:  # a test finished 2+ tests ago
                stale.append(pid)
        elif TOKEN.encode() in argv or TOKEN.encode() in environ:
            tagged.append(pid)
    return {"fds": fds, "pidfds": pidfds, "rss_kib": rss, "children": children, "zombies": zombies,
            "stale": stale, "tagged": tagged}


def _write(record):
    OUT.write(json.dumps(record) + "\\n")


def pytest_collection_modifyitems(items):
    # interleave the kinds: run in index order, so that the index is the position too
    items.sort(key=lambda item: item.callspec.params["index"])


def pytest_runtest_logreport(report):
    if os.getpid() == PYTEST_PID and (report.when == "call" or not report.passed):
        outcomes[report.outcome] = outcomes.get(report.outcome, 0) + 1


@pytest.hookimpl(trylast=True)  # after the terminal plugin registered its reporter
def pytest_configure(config):
    global STATS
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    STATS = None if KEEP_REPORTS or reporter is None else reporter.stats


def _forget(nodeid):
    """Drop this test's reports from pytest's store (terminalreporter.stats keeps every
    report of the session, for the summary): what pytest keeps is not the runtime's."""
    for reports in STATS.values():
        while reports and getattr(reports[-1], "nodeid", None) == nodeid:
            reports.pop()


def pytest_runtest_logfinish(nodeid):
    global finished
    if os.getpid() != PYTEST_PID:
        return
    finished += 1
    if STATS is not None:
        _forget(nodeid)
    if finished == 1 or finished % EVERY == 0:
        index = int(nodeid.rsplit("[", 1)[1].rstrip("]"))  # the last test run
        _write({"kind": "sample", "tests": finished, "t": time.monotonic(), **sample(index)})


@pytest.hookimpl(trylast=True)  # after pytest-rootless closed its session state
def pytest_unconfigure(config):
    if os.getpid() == PYTEST_PID:
        _write({"kind": "end", "tests": finished, "outcomes": outcomes, **sample(None)})
'''


def _tagged_after_exit(token: str) -> list[int]:
    """Processes carrying the token in their argv or environment (those we may read)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{name}/{what}", "rb") as f:
                    if token.encode() in f.read():
                        found.append(int(name))
                        break
            except OSError:
                continue
    return found


def _max_pending() -> int:
    try:
        from pytest_rootless.runtime.launch import Reaper
    except ImportError:
        return 8  # its value when this was written
    return Reaper.MAX_PENDING


def _expected(count: int) -> dict[str, int]:
    failed = len(range(KINDS.index("failing"), count, len(KINDS)))
    return {"passed": count - failed, "failed": failed}


def _run(args: argparse.Namespace, work: Path, token: str, control: bool) -> tuple[int, float]:
    """One pytest session in ``work``; its samples go to samples[-control].jsonl."""
    name = "control" if control else "soak"
    (work / f"test_{name}.py").write_text(
        f"COUNT = {args.count}\n{CONTROL_FILE if control else TEST_FILE}"
    )
    env = dict(os.environ, SOAK_TOKEN=token, SOAK_EVERY=str(args.every))
    env["SOAK_SAMPLES"] = str(work / f"samples-{name}.jsonl")
    env["SOAK_KEEP_REPORTS"] = "1" if args.keep_reports else "0"
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=no"]
    if control:
        command += ["-p", "no:rootless"]
    else:
        # a host that cannot isolate is an error, not thousands of skips
        command += ["-p", "rootless", "--rootless-require"]
    command += ["-o", "console_output_style=classic", str(work / f"test_{name}.py")]
    if not control:
        print(f"      {' '.join(command)}")
        print(f"      (in {work}, output in {name}.log there)")
    started = time.monotonic()
    with open(work / f"{name}.log", "wb") as log:
        done = subprocess.run(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    return done.returncode, time.monotonic() - started


def _records(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    rows = [r for r in records if r["kind"] == "sample"]
    return rows, next((r for r in records if r["kind"] == "end"), None)


def _growth(rows: list[dict[str, Any]], warmup: int) -> tuple[int, int, int]:
    """(RSS after the warm-up, at the end, tests in between), in KiB."""
    base = next(r for r in rows if r["tests"] == warmup)
    return base["rss_kib"], rows[-1]["rss_kib"], rows[-1]["tests"] - warmup


def _judge(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    end: dict[str, Any] | None,
    control: list[dict[str, Any]] | None,
    after: list[int],
) -> list[str]:
    """Print the table and the figures; return what failed."""
    print(
        f"{'tests':>7} {'fds':>5} {'RSS KiB':>9} {'children':>9} {'zombies':>8} {'leftover':>9}"
        f" {'ms/test':>8}"
    )
    for before, r in zip([None, *rows], rows, strict=False):
        pace = ""
        if before is not None:
            pace = f"{1000 * (r['t'] - before['t']) / (r['tests'] - before['tests']):.1f}"
        print(
            f"{r['tests']:>7} {r['fds']:>5} {r['rss_kib']:>9} {r['children']:>9} "
            f"{r['zombies']:>8} {len(r['stale']):>9} {pace:>8}"
        )
    print()
    if end is None or not rows or rows[-1]["tests"] != args.count:
        return ["pytest did not finish the session"]
    failures = []

    fds = [r["fds"] for r in rows]
    print(f"fds:      first {fds[0]}, last {fds[-1]}, max {max(fds)}")
    if not max(fds) == fds[0] == fds[-1]:
        failures.append(f"pytest's open fds grew ({fds[0]} -> max {max(fds)}, last {fds[-1]})")
    pidfds = max(r["pidfds"] for r in rows)
    print(f"pidfds:   at most {pidfds} (containers being torn down; bounded by 8)")
    if pidfds > 8:
        failures.append(f"pytest held {pidfds} pidfds of containers being torn down (> 8)")

    base, last, tests = _growth(rows, args.warmup)
    growth = 100.0 * (last - base) / base
    print(
        f"RSS:      {rows[0]['rss_kib'] / 1024:.1f} MiB after test 1, {base / 1024:.1f} MiB after "
        f"the {args.warmup}-test warm-up, {last / 1024:.1f} MiB after {args.count}: "
        f"{(last - base) / 1024:+.2f} MiB, {growth:+.1f} % ({(last - base) / tests:.2f} KiB a test)"
    )
    share = last - base
    if control is not None:
        c_base, c_last, c_tests = _growth(control, args.warmup)
        share -= c_last - c_base
        print(
            f"          pytest alone, {args.count} plain tests (control session, no plugin): "
            f"{(c_last - c_base) / 1024:+.2f} MiB ({(c_last - c_base) / c_tests:.2f} KiB a test)"
        )
        print(
            f"          the runtime's share: {share / 1024:+.2f} MiB, {100.0 * share / base:+.1f} %"
            f" of {base / 1024:.1f} MiB (limit < {args.max_growth:g} %)"
        )
    else:
        print(f"          no control session: all of it counts (limit < {args.max_growth:g} %)")
    print(
        "          "
        + (
            "with pytest's report store (every TestReport, for the summary)"
            if args.keep_reports
            else "pytest's report store (every TestReport, for the summary) emptied as tests end"
        )
    )
    if 100.0 * share / base >= args.max_growth:
        failures.append(f"RSS grew by {100.0 * share / base:.1f} % (limit {args.max_growth:g} %)")

    pending = _max_pending()
    zombies = max(r["zombies"] for r in rows)
    print(
        f"zombies:  at most {zombies} mid-run (finished containers are reaped lazily, at most "
        f"{pending} pending); {end['zombies']} at session end, with {end['children']} "
        "children left"
    )
    if zombies > pending:
        failures.append(f"{zombies} zombie children mid-run, more than the {pending} pending")
    if end["zombies"] or end["children"]:
        failures.append(f"{end['children']} children ({end['zombies']} zombies) at session end")

    stale = sorted({pid for r in rows for pid in r["stale"]})
    print(
        f"leftover: {len(stale)} container processes mid-run (of tests finished 2+ tests "
        f"earlier), {len(end['tagged'])} at session end, {len(after)} after pytest exited"
    )
    if stale or end["tagged"] or after:
        failures.append(
            f"leftover container processes: mid-run {stale}, at session end "
            f"{end['tagged']}, after exit {after}"
        )

    expected = _expected(args.count)
    print(f"outcomes: {end['outcomes']} of {end['tests']} tests (expected {expected})")
    if end["outcomes"] != expected or end["tests"] != args.count:
        failures.append("the tests did not end as written")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="tests (default 5000)")
    parser.add_argument("--every", type=int, default=250, help="sample every N tests (250)")
    parser.add_argument(
        "--warmup", type=int, default=250, help="RSS growth counts from this sample (250)"
    )
    parser.add_argument(
        "--max-growth", type=float, default=10.0, help="limit of the runtime's RSS growth, %% (10)"
    )
    parser.add_argument(
        "--no-control", action="store_true", help="no control session: all growth counts"
    )
    parser.add_argument(
        "--keep-reports", action="store_true", help="leave pytest's report store as it is"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated directory")
    args = parser.parse_args(argv)
    if not (0 < args.every <= args.warmup and args.warmup % args.every == 0):
        parser.error("--warmup must be a positive multiple of --every")
    if args.count < args.warmup + args.every or args.count % args.every:
        parser.error("--count must be a multiple of --every, at least --warmup + --every")

    token = f"rootless-soak-{uuid.uuid4().hex[:12]}"
    work = Path(tempfile.mkdtemp(prefix="rootless-soak-"))
    (work / "pytest.ini").write_text("[pytest]\n")  # rootdir here, none of the caller's ini
    (work / "conftest.py").write_text(CONFTEST)
    print(
        f"soak: {args.count} tests in one pytest session; uid {os.getuid()}, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs"
    )
    status, wall = _run(args, work, token, control=False)
    after = _tagged_after_exit(token)
    deadline = time.monotonic() + 5  # the kernel tears namespaces down asynchronously
    while after and time.monotonic() < deadline:
        time.sleep(0.1)
        after = _tagged_after_exit(token)
    print(
        f"      pytest ended with status {status} after {wall:.1f} s "
        f"({1000 * wall / args.count:.1f} ms a test)"
    )
    control = None
    if not args.no_control:
        _run(args, work, token, control=True)
        control, control_end = _records(work / "samples-control.jsonl")
        if control_end is None or not control or control[-1]["tests"] != args.count:
            print("the control session did not finish: see control.log")
            control = None
    print()
    rows, end = _records(work / "samples-soak.jsonl")
    failures = _judge(args, rows, end, control, after)
    if control is None and not args.no_control:
        failures.append("the control session did not finish")
    print()
    print("FAIL: " + "; ".join(failures) if failures else "PASS")
    if args.keep or failures:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
