"""Real third-party test suites, plainly and with ``--rootless`` (``tox -e realworld``).

The sdists of two popular pure-Python projects that ship their tests are downloaded from
the package index (``pip download --no-binary :all:``), installed, and their suites run
twice in the project's own directory, with its own pytest configuration: plainly and
with ``--rootless``. Every test must end the same way in both runs (each phase's outcome
and whether it was an expected failure); the script prints both wall times and exits 1
on any difference, listing them.

    python scripts/realworld.py [--workdir DIR] [--keep] [PROJECT ...]

Reports are recorded by the parity harness's reporter (tests/parity_corpus/reporter.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORTER = REPO / "tests" / "parity_corpus"


@dataclass(frozen=True)
class Project:
    name: str  # on the package index
    version: str
    tests: str  # the test directory, in the sdist
    why: str


PROJECTS = {
    project.name: project
    for project in (
        # attrs: ~1400 pytest tests, hypothesis property tests, pytest's fixtures and
        # parametrize throughout, a conftest with session-wide settings
        Project("attrs", "25.4.0", "tests", "pytest style, hypothesis, conftest"),
        # more-itertools: ~700 unittest.TestCase tests and ~20000 subTests
        Project("more-itertools", "10.8.0", "tests", "unittest style, subTest"),
    )
}


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def fetch(project: Project, workdir: Path) -> Path:
    """The project's sdist, downloaded and unpacked once; returns its directory."""
    sdists = workdir / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    spec = f"{project.name}=={project.version}"
    found = [p for p in sdists.glob("*.tar.gz") if _is_sdist_of(p, project)]
    if not found:
        _pip("download", "--quiet", "--no-binary", ":all:", "--no-deps", "-d", str(sdists), spec)
        found = [p for p in sdists.glob("*.tar.gz") if _is_sdist_of(p, project)]
    (archive,) = found
    source = workdir / "src" / archive.name.removesuffix(".tar.gz")
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(source.parent, filter="data")
    _pip("install", "--quiet", "--no-deps", str(source))
    return source


def _is_sdist_of(path: Path, project: Project) -> bool:
    stem = path.name.removesuffix(".tar.gz").lower()
    return stem == f"{project.name.replace('-', '_')}-{project.version}".lower() or (
        stem == f"{project.name}-{project.version}".lower()
    )


@dataclass
class Run:
    seconds: float
    summary: str
    outcomes: dict[str, list[tuple[str, str, bool]]]


def _run(source: Path, project: Project, isolated: bool, out: Path) -> Run:
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "reporter",
        "-p",
        "rootless",
        "-p",
        "no:cacheprovider",
        f"--parity-out={out}",
        "-q",
        "--no-header",
        project.tests,
    ]
    if isolated:
        command.append("--rootless")
    env = {**os.environ, "PYTHONPATH": str(REPORTER)}
    started = time.monotonic()
    done = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else done.stderr.strip()[-500:]
    if done.returncode not in (0, 1):
        raise SystemExit(f"{project.name}: pytest ended with {done.returncode}:\n{done.stdout}")
    outcomes: dict[str, list[tuple[str, str, bool]]] = defaultdict(list)
    for line in out.read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "report":
            outcomes[record["nodeid"]].append(
                (record["when"], record["outcome"], record["wasxfail"] is not None)
            )
    return Run(seconds, summary, dict(outcomes))


def _differences(plain: Run, isolated: Run) -> list[str]:
    found = []
    for nodeid in sorted(plain.outcomes.keys() | isolated.outcomes.keys()):
        left, right = plain.outcomes.get(nodeid), isolated.outcomes.get(nodeid)
        if left != right:
            found.append(f"  {nodeid}\n    plain:      {left}\n    --rootless: {right}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("projects", nargs="*", help=f"default: {' '.join(PROJECTS)}")
    parser.add_argument("--workdir", type=Path, default=REPO / ".tox" / "realworld-work")
    parser.add_argument("--keep", action="store_true", help="keep the unpacked sources")
    args = parser.parse_args()
    unknown = set(args.projects) - PROJECTS.keys()
    if unknown:
        parser.error(f"unknown project(s) {sorted(unknown)}: choose from {sorted(PROJECTS)}")
    failed = False
    rows = []
    for name in args.projects or PROJECTS:
        project = PROJECTS[name]
        source = fetch(project, args.workdir)
        print(f"== {project.name} {project.version} ({project.why}): {source}", flush=True)
        plain = _run(source, project, False, args.workdir / f"{name}-plain.jsonl")
        print(f"   plain:      {plain.summary}  [{plain.seconds:.1f} s]", flush=True)
        isolated = _run(source, project, True, args.workdir / f"{name}-rootless.jsonl")
        print(f"   --rootless: {isolated.summary}  [{isolated.seconds:.1f} s]", flush=True)
        differences = _differences(plain, isolated)
        if differences:
            failed = True
            print(f"   {len(differences)} test(s) ended differently:")
            print("\n".join(differences[:50]))
        tests = len(plain.outcomes)
        per_test = (isolated.seconds - plain.seconds) / max(tests, 1) * 1000
        rows.append((name, tests, plain.seconds, isolated.seconds, per_test, not differences))
        if not args.keep:
            shutil.rmtree(source, ignore_errors=True)
    print()
    print(
        f"{'project':<16} {'tests':>6} {'plain':>9} {'--rootless':>11} {'per test':>10}  outcomes"
    )
    for name, tests, plain_s, isolated_s, per_test, same in rows:
        verdict = "identical" if same else "DIFFERENT"
        print(
            f"{name:<16} {tests:>6} {plain_s:>8.1f}s {isolated_s:>10.1f}s "
            f"{per_test:>+8.1f}ms  {verdict}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
