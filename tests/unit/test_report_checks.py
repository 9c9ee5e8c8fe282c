"""The checks a report from the container passes before pytest sees it (plugin/reports.py):
each one refuses what it must and gives back what pytest expects."""

from __future__ import annotations

import pytest

from pytest_rootless.plugin import reports
from pytest_rootless.protocol.framing import ProtocolError


def test_reserved_attributes_are_refused() -> None:
    for key in ("node", "__class__", "longreprtext", "passed"):
        with pytest.raises(ProtocolError, match="reserved attributes"):
            reports._check_reserved({"outcome": "passed", key: 1}, pytest.TestReport)
    reports._check_reserved({"outcome": "passed", "my_plugin_data": 1}, pytest.TestReport)


def test_the_markup_is_taken_out_and_must_go_with_a_text_longrepr() -> None:
    data, markup = reports._checked_data({reports.MARKUP_KEY: "\x1b[31m", "longrepr": "E"})
    assert (data, markup) == ({"longrepr": "E"}, "\x1b[31m")
    with pytest.raises(ProtocolError, match="rendered longrepr"):
        reports._checked_data({reports.MARKUP_KEY: "x", "longrepr": None})
    with pytest.raises(ProtocolError, match="wasxfail"):
        reports._checked_data({"wasxfail": 3})
    with pytest.raises(ProtocolError, match="does not hold a TestReport"):
        reports._checked_data(["not", "a", "dict"])


def test_location_becomes_a_tuple() -> None:
    assert reports._checked_location(["t.py", 3, "test_x"]) == ("t.py", 3, "test_x")
    assert reports._checked_location(("t.py", None, "test_x")) == ("t.py", None, "test_x")
    for bad in (["t.py", "3", "test_x"], ["t.py", 3], "t.py::test_x", None):
        with pytest.raises(ProtocolError, match="malformed location"):
            reports._checked_location(bad)


def test_sections_and_user_properties_become_pairs() -> None:
    assert reports._checked_sections([["Captured stdout call", "hi"]]) == [
        ("Captured stdout call", "hi")
    ]
    with pytest.raises(ProtocolError, match="malformed sections"):
        reports._checked_sections([["title", 3]])
    assert reports._checked_user_properties([["size", [1, 2]]]) == [("size", [1, 2])]
    with pytest.raises(ProtocolError, match="malformed user_properties"):
        reports._checked_user_properties([[1, "value"]])
