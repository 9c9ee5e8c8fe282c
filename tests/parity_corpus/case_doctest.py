# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""Doctests (run with --doctest-modules).

>>> 1 + 1
2
"""


def add(a, b):
    """
    >>> add(1, 2)
    3
    >>> add(2, 2)
    5
    """
    return a + b


def raises():
    """
    >>> raises()
    Traceback (most recent call last):
    ...
    KeyError: 'x'
    >>> print("output")
    other
    """
    raise KeyError("x")
