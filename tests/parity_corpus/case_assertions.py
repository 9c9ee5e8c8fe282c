# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Assertion rewriting: what pytest explains about each kind of value."""

import dataclasses
import re

import pytest


def test_dict():
    assert {"a": 1, "b": [1, 2], "c": "x"} == {"a": 2, "b": [1, 2], "d": "x"}


def test_list():
    assert [1, 2, 3, 4, 5] == [1, 2, 4, 4, 5, 6]


def test_long_strings():
    left = "line one\nline two\n" + "x" * 200 + "\nline four"
    right = "line one\nline 2\n" + "x" * 200 + "y\nline four"
    assert left == right


def test_long_single_line_string():
    assert "a" * 100 + "b" + "c" * 100 == "a" * 100 + "B" + "c" * 100


def test_set():
    assert {1, 2, 3} == {2, 3, 4}


def test_nested():
    assert {"k": [{"x": 1}, {"y": (1, 2)}]} == {"k": [{"x": 1}, {"y": (1, 3)}]}


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_dataclass():
    assert Point(1, 2) == Point(1, 3)


def test_in():
    assert "needle" in "a haystack with no such word"


def test_message():
    value = 41
    assert value == 42, f"expected the answer, got {value}"


def test_approx():
    assert [0.1 + 0.2, 1.0] == pytest.approx([0.3, 1.1])


def test_comparison_chain():
    a, b = 3, 2
    assert a < b


def test_call_in_assert():
    def double(x):
        return x * 2

    assert double(2) == 5


def test_not():
    assert not [1, 2]


def test_is_none():
    assert re.match("x", "y") is not None


def test_raises_did_not_raise():
    with pytest.raises(ValueError):
        pass


def test_raises_wrong_type():
    with pytest.raises(ValueError):
        raise TypeError("not a value error")


def test_raises_match_mismatch():
    with pytest.raises(ValueError, match=r"^expected \d+$"):
        raise ValueError("something else")


def test_raises_passes():
    with pytest.raises(ZeroDivisionError) as info:
        1 / 0
    assert "division" in str(info.value)


def test_verbose_repr_of_long_list():
    assert list(range(100)) == [*range(50), 999, *range(51, 100)]


def test_multiline_text():
    assert "alpha\nbeta\ngamma\n" == "alpha\nBETA\ngamma\n"


def test_bytes():
    assert b"\x00\x01binary" == b"\x00\x02binary"
