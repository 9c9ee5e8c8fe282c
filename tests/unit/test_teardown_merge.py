"""One teardown report from two halves, as pytest makes one: the container's (function
scope) and the host's (higher scopes). Real pytest items and reports (pytester, in this
process: nothing is forked)."""

from __future__ import annotations

import pytest

from pytest_rootless.plugin.host_item import _merge_teardown


def teardown_of(item: pytest.Item, fails: bool) -> tuple[pytest.CallInfo[None], pytest.TestReport]:
    def run() -> None:
        if fails:
            raise RuntimeError("the host's module fixture failed to tear down")

    call = pytest.CallInfo.from_call(run, "teardown")
    report: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    return call, report


def inner_report(item: pytest.Item, fails: bool) -> pytest.TestReport:
    _, report = teardown_of(item, fails)
    report.sections.append(("Captured stdout teardown", "from the container\n"))
    report.duration = 1.0
    return report


@pytest.fixture
def item(pytester: pytest.Pytester) -> pytest.Item:
    return pytester.getitem("def test_func(): pass")


def test_the_host_alone_when_the_container_sent_no_teardown(item: pytest.Item) -> None:
    call, _ = teardown_of(item, fails=True)
    report = _merge_teardown(item, None, call)
    assert report.failed
    assert "failed to tear down" in report.longreprtext


def test_a_passing_host_half_adds_its_time(item: pytest.Item) -> None:
    inner = inner_report(item, fails=False)
    call, _ = teardown_of(item, fails=False)
    report = _merge_teardown(item, inner, call)
    assert report is inner
    assert report.passed
    assert report.duration == pytest.approx(1.0 + call.duration)


def test_a_failing_host_half_fails_the_containers_report(item: pytest.Item) -> None:
    inner = inner_report(item, fails=False)
    call, _ = teardown_of(item, fails=True)
    report = _merge_teardown(item, inner, call)
    assert report.failed
    assert "failed to tear down" in report.longreprtext
    assert ("Captured stdout teardown", "from the container\n") in report.sections


def test_both_halves_failing_keeps_both_errors(item: pytest.Item) -> None:
    inner = inner_report(item, fails=True)
    call, _ = teardown_of(item, fails=True)
    report = _merge_teardown(item, inner, call)
    assert report.failed
    titles = [title for title, _ in report.sections]
    assert "rootless: the host's teardown of higher-scoped fixtures failed too" in titles
    assert "Captured stdout teardown" in titles
