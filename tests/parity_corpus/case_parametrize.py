# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Parametrize ids of every kind, and marks per parameter."""

import pytest


@pytest.mark.parametrize("n", [1, 2, 3])
def test_numbers(n):
    assert n != 2


@pytest.mark.parametrize(("a", "b"), [("x", "y"), ("é", "ü"), ("with space", "a/b::c")])
def test_strings(a, b):
    assert a != "é"


@pytest.mark.parametrize("value", [None, 1.5, True, b"bytes", object()], ids=repr)
def test_ids_function(value):
    pass


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(1, id="explicit-id"),
        pytest.param(2, marks=pytest.mark.xfail(reason="param xfail")),
        pytest.param(3, marks=pytest.mark.skip(reason="param skip")),
        pytest.param(4, id="fails"),
    ],
)
def test_params(case):
    assert case in (1, 3)


@pytest.mark.parametrize("x", [1, 2], ids=["first", "second"])
@pytest.mark.parametrize("y", ["a"])
def test_stacked(x, y):
    pass


@pytest.mark.parametrize("data", [{"k": [1]}, [1, 2], (3,)])
def test_containers(data):
    assert not data


class TestParamClass:
    @pytest.mark.parametrize("z", ["[brackets]", "tab\there", "new\nline"])
    def test_weird(self, z):
        assert "x" in z
