"""The parity harness: every file of ``tests/parity_corpus`` runs twice, plainly and with
``--rootless``, and the two runs must report the same, test by test: outcome, longrepr
text, captured sections, user properties, warnings (in order), the terminal output,
--durations and the junitxml file. Only addresses, timings and paths are normalised.

A difference that cannot be removed is declared below as an :class:`Expected` with its
reason (and listed in docs/limits.md, "Limits and known gaps"): the harness takes it out of
both runs before comparing, and checks that it still occurs, so that a fix shows up as a
failure asking to remove the declaration. Nothing is skipped silently.

Reports are collected by ``tests/parity_corpus/reporter.py`` (loaded with ``-p
reporter``), one JSON line per ``pytest_runtest_logreport`` and
``pytest_warning_recorded`` call on the host.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).parents[1] / "parity_corpus"
TIMEOUT = 300
PYTEST_9 = int(pytest.__version__.split(".")[0]) >= 9


# --- expected differences ---------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """A known difference: ``normalize`` removes it from a text of either run (terminal
    output, a longrepr, a captured section). ``nodeids``: tests whose longrepr differs
    beyond what a text normalisation can undo: for them only the outcomes are compared,
    and each run's longrepr must contain every one of ``must_mention``."""

    reason: str
    normalize: Callable[[str], str] = lambda text: text
    nodeids: tuple[str, ...] = ()
    must_mention: tuple[str, ...] = ()
    summary_only: bool = False  # compare the terminal from the short summary on
    occurs: bool = True  # where it cannot occur (an older pytest), it is not required


def _drop_lines(pattern: str) -> Callable[[str], str]:
    regex = re.compile(pattern)

    def normalize(text: str) -> str:
        return "\n".join(line for line in text.split("\n") if not regex.search(line))

    return normalize


SUBTEST_CAPTURE = Expected(
    "pytest's unittest plugin logs each subTest report while the test's output is being "
    "captured, so a plain run puts the terminal's own SUBPASSED/SUBFAILED progress (and "
    "the line breaks around it) into the test's captured stdout, a pytest bug; an "
    "isolated test's host prints them on the terminal, where they belong. Compared: "
    "every report's outcome, the short summary and the counts",
    nodeids=(
        "case_unittest_subtests.py::Case::test_subtests",
        "case_unittest_subtests.py::Case::test_subtests_pass",
    ),
    must_mention=(),
    summary_only=True,
    occurs=PYTEST_9,
)


DOUBLE_TEARDOWN = Expected(
    "when a function-scoped fixture (torn down in the container) and a higher-scoped "
    "one (torn down on the host) both fail after the same test, pytest reports one "
    "ExceptionGroup; isolated, the container's error is the report and the host's "
    "follows in a section, since the two exceptions live in different processes",
    nodeids=("case_double_teardown.py::test_both_teardowns_fail",),
    must_mention=("function fixture teardown boom", "module fixture teardown boom"),
)


CACHE_NOT_JSON = Expected(
    "config.cache.set() of a value JSON cannot hold raises the same TypeError, from "
    "pytest-rootless's stand-in for the cache in the container (the cache directory is the "
    "host's, read-only there; values set in a test reach it at the end) instead of from "
    "pytest's cacheprovider.py: its traceback lacks that one frame",
    nodeids=("case_cache.py::test_not_json",),
    must_mention=("TypeError: Object of type object is not JSON serializable",),
)


def _drop_frames(text: str) -> str:
    # native tracebacks: the frames between pytest's CallInfo.from_call and the fixture
    # (pytest's runner and pluggy plainly; pytest-rootless's host half, isolated)
    lines = text.split("\n")
    kept: list[str] = []
    skipping = False
    for line in lines:
        frame = re.match(r"\s*(\| )?\s*File \"([^\"]+)\"", line)
        if frame:
            skipping = any(
                part in frame.group(2) for part in ("/_pytest/", "/pluggy/", "/pytest_rootless/")
            )
        elif not line.startswith(" ") or (re.match(r"\s*(\| )?\S", line) and not skipping):
            skipping = skipping and line.startswith(" ")
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


HOST_FRAMES = Expected(
    "with --tb=native, an error of a class, module or session fixture (set up and torn "
    "down on the host) shows pytest-rootless's host frames between pytest's CallInfo "
    "and the fixture, where a plain run shows pytest's runner and pluggy frames",
    normalize=_drop_frames,
)


# --- the variants -----------------------------------------------------------------------------

UNITTEST_SUBTESTS = "case_unittest_subtests.py"  # see SUBTEST_CAPTURE
SESSION_STOP = "case_session_stop.py"  # it ends the run: a variant of its own
ALL = tuple(
    sorted(
        p.name for p in CORPUS.glob("case_*.py") if p.name not in (UNITTEST_SUBTESTS, SESSION_STOP)
    )
)
EVERYDAY = (
    "case_outcomes.py",
    "case_capture.py",
    "case_fixtures.py",
    "case_warnings.py",
    "case_classes.py",
)


@dataclass(frozen=True)
class Variant:
    args: tuple[str, ...]
    files: tuple[str, ...] = ALL
    expected: tuple[Expected, ...] = ()
    junitxml: bool = False


VARIANTS = {
    # everything a report holds, the junitxml file, every duration
    "reports": Variant(
        (
            "-rA",
            "--durations=0",
            "-vv",
            "--doctest-modules",
            "-W",
            "default",
            "-o",
            "junit_family=xunit1",
            "-o",
            "junit_logging=all",
            "--cache-clear",
        ),
        expected=(DOUBLE_TEARDOWN, CACHE_NOT_JSON),
        junitxml=True,
    ),
    # xunit2, pytest's default family: record_xml_attribute only warns there
    "junit-xunit2": Variant(("-q",), files=("case_properties.py",), junitxml=True),
    # colours, the progress row, short tracebacks, short summary messages
    "quiet-colour": Variant(
        ("-q", "--color=yes", "-ra", "--tb=short", "--doctest-modules", "--cache-clear"),
        expected=(DOUBLE_TEARDOWN, CACHE_NOT_JSON),
    ),
    "unittest-subtests": Variant(
        ("-rA", "-o", "junit_logging=all"),
        files=(UNITTEST_SUBTESTS,),
        expected=(SUBTEST_CAPTURE,),
        junitxml=True,
    ),
    "unittest-subtests-verbose": Variant(
        ("-vv", "-rA"), files=(UNITTEST_SUBTESTS,), expected=(SUBTEST_CAPTURE,)
    ),
    # live output: the container writes to the terminal between the host's words
    "no-capture": Variant(("-s", "-v", "--setup-show"), files=EVERYDAY),
    "log-cli": Variant(("--log-cli-level=INFO", "-v"), files=EVERYDAY),
    "capture-sys": Variant(("--capture=sys", "-rA"), files=("case_capture.py",)),
    "capture-tee-sys": Variant(("--capture=tee-sys", "-rA"), files=("case_capture.py",)),
    "no-warnings-plugin": Variant(
        ("-p", "no:warnings", "-rA"), files=("case_warnings.py", "case_outcomes.py")
    ),
    "setup-only": Variant(("--setup-only", "-v"), files=("case_fixtures.py",)),
    "setup-plan": Variant(("--setup-plan", "-v"), files=("case_fixtures.py",)),
    "runxfail": Variant(("--runxfail", "-rA"), files=("case_outcomes.py", "case_xfail_module.py")),
    "showlocals": Variant(("-l", "--tb=long"), files=("case_assertions.py",)),
    "tb-line": Variant(("--tb=line",), files=EVERYDAY),
    "tb-native": Variant(("--tb=native",), files=EVERYDAY, expected=(HOST_FRAMES,)),
    "maxfail": Variant(("--maxfail=3", "-v"), files=EVERYDAY),
    "exitfirst": Variant(("-x", "-rA"), files=("case_fixtures.py",)),
    "session-stop": Variant(("-rA", "-v"), files=(SESSION_STOP, "case_outcomes.py")),
    # skip marks before any fixture; what host-side fixtures leave in the temporary dir
    "skip-and-host-fixtures": Variant(
        ("-rA", "-v"),
        files=(
            "case_skip_guards_fixtures.py",
            "case_host_tempfiles.py",
            "case_skip_module.py",
            "case_skip_module_level.py",
            "case_xfail_module.py",
        ),
    ),
}


# --- running and normalising ------------------------------------------------------------------


@dataclass
class Run:
    ret: int
    outcomes: dict[str, int]
    stdout: str
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    junitxml: str | None = None


def _run(pytester: pytest.Pytester, variant: Variant, isolated: bool) -> Run:
    name = "rootless" if isolated else "plain"
    out = pytester.path / f"{name}.jsonl"
    args = ["-p", "reporter", "-p", "rootless", f"--parity-out={out}"]
    if isolated:
        args.append("--rootless")
    xml = pytester.path / "junit" / name / "report.xml"
    if variant.junitxml:
        args.append(f"--junitxml={xml}")
    result = pytester.runpytest_subprocess(*args, *variant.args, *variant.files, timeout=TIMEOUT)
    run = Run(int(result.ret), result.parseoutcomes(), result.stdout.str())
    reports: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in out.read_text().splitlines() if out.exists() else []:
        record = json.loads(_normal_text(line, pytester.path))
        if record.pop("type") == "report":
            reports[record["nodeid"]].append(record)
        else:
            run.warnings.append(record)
    run.reports = dict(reports)
    if variant.junitxml:
        run.junitxml = _normal_xml(xml)
    return run


def _normal_text(text: str, root: Path) -> str:
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)  # object addresses
    return text.replace(str(root), "{root}")


def _normal_stdout(text: str, root: Path) -> str:
    lines = []
    durations = []
    for line in _normal_text(text, root).split("\n"):
        if line.startswith("rootless:") or "generated xml file" in line:
            continue  # the plugin's header; the xml file's name
        if re.match(r"\d+\.\d\ds (setup|call|teardown) ", line):
            durations.append(line.split(" ", 1)[1])  # sorted by time: compared as a set
            continue
        lines.append(re.sub(r" in \d+\.\d+s( \(\d+:\d\d:\d\d\))?", " in N.NNs", line))
    return "\n".join(lines + sorted(durations))


def _normal_xml(path: Path) -> str:
    root = ET.parse(path).getroot()
    for element in root.iter():
        for key in ("time", "timestamp", "hostname"):
            element.attrib.pop(key, None)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def _comparable(run: Run, root: Path, expected: tuple[Expected, ...]) -> dict[str, Any]:
    """What must be equal between the runs, with the expected differences taken out."""

    def text(value: str) -> str:
        value = _normal_text(value, root)
        for known in expected:
            value = known.normalize(value)
        return value

    special = {nodeid for known in expected for nodeid in known.nodeids}
    reports = {}
    for nodeid, records in run.reports.items():
        kept = []
        for record in records:
            record = dict(record)
            if nodeid in special:
                record["longrepr"] = record["sections"] = None
            elif isinstance(record["longrepr"], str):
                record["longrepr"] = text(record["longrepr"])
            if record["sections"] is not None:
                record["sections"] = [[title, text(body)] for title, body in record["sections"]]
            # a longrepr's class differs when it crossed as data; what it shows does not
            record["longrepr_type"] = type(record["longrepr"]).__name__
            kept.append(record)
        reports[text(nodeid)] = kept
    stdout = _normal_stdout(run.stdout, root)
    for known in expected:
        stdout = known.normalize(stdout)
    if special:  # the failure texts of these tests are compared by must_mention instead
        stdout = _cut_sections_of(stdout, special)
    if any(known.summary_only for known in expected):
        stdout = stdout[stdout.find("short test summary info") :]
    junit = run.junitxml
    if junit is not None:
        junit = text(junit)
        if special:
            junit = _cut_testcases_of(junit, special)
    return {
        "ret": run.ret,
        "outcomes": run.outcomes,
        "reports": reports,
        "warnings": [{**w, "filename": text(w["filename"])} for w in run.warnings],
        "stdout": stdout,
        "junitxml": junit,
    }


def _cut_sections_of(stdout: str, nodeids: set[str]) -> str:
    names = [nodeid.split("::")[-1] for nodeid in nodeids]
    out = []
    cutting = False
    for line in stdout.split("\n"):
        plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if re.match(r"[_=]{3,} .* [_=]{3,}$", plain):
            cutting = any(f" {name} " in line for name in names)
        if re.match(r"(ERROR|FAILED) ", plain) and any(n in plain for n in nodeids):
            line = plain.split(" - ")[0]
        if not cutting:
            out.append(line)
    return "\n".join(out)


def _cut_testcases_of(junit: str, nodeids: set[str]) -> str:
    root = ET.fromstring(junit)
    names = {nodeid.split("::")[-1] for nodeid in nodeids}
    for suite in root.iter("testsuite"):
        for case in suite.findall("testcase"):
            if case.get("name") in names:
                for child in list(case):
                    case.remove(child)
    return ET.tostring(root, encoding="unicode")


def _diff(plain: object, isolated: object) -> str:
    """A unified diff of the two runs' values (plain first), for the failure message."""
    if not isinstance(plain, str) or not isinstance(isolated, str):
        plain, isolated = (json.dumps(v, indent=1, sort_keys=True) for v in (plain, isolated))
    lines = difflib.unified_diff(
        plain.split("\n"), isolated.split("\n"), "plain", "isolated", lineterm="", n=2
    )
    return "\n".join(list(lines)[:200])


@pytest.fixture
def corpus(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for path in CORPUS.glob("*.py"):
        shutil.copy(path, pytester.path / path.name)
    # One hash seed for both runs: pytest's coloured log levels come from a set, whose
    # order is the process's (both runs would differ plainly as well)
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    return pytester


@pytest.mark.parametrize("name", VARIANTS)
def test_isolated_runs_report_what_plain_runs_report(corpus: pytest.Pytester, name: str) -> None:
    variant = VARIANTS[name]
    plain = _run(corpus, variant, isolated=False)
    isolated = _run(corpus, variant, isolated=True)
    root = corpus.path
    assert plain.reports, f"no report was recorded:\n{plain.stdout}"
    assert "INTERNALERROR" not in isolated.stdout, isolated.stdout

    left = _comparable(plain, root, variant.expected)
    right = _comparable(isolated, root, variant.expected)
    for key in ("ret", "outcomes", "warnings", "junitxml", "stdout"):
        assert right[key] == left[key], f"{name}: {key} differs:\n{_diff(left[key], right[key])}"
    assert right["reports"].keys() == left["reports"].keys()
    for nodeid, records in left["reports"].items():
        assert right["reports"][nodeid] == records, (
            f"{name}: {nodeid} differs:\n{_diff(records, right['reports'][nodeid])}"
        )

    # Each declared difference still occurs (else: remove it here and in docs/limits.md) and
    # the tests it covers say what they must.
    for known in variant.expected:
        for nodeid in known.nodeids:
            for run in (plain, isolated):
                shown = " ".join(
                    str(r["longrepr"]) + str(r["sections"]) for r in run.reports[nodeid]
                )
                for words in known.must_mention:
                    assert words in shown, f"{nodeid}: {words!r} is not reported"
        if not known.occurs:
            continue
        without = tuple(k for k in variant.expected if k is not known)
        assert _comparable(plain, root, without) != _comparable(isolated, root, without), (
            f"{name}: the expected difference no longer occurs, remove it: {known.reason}"
        )
