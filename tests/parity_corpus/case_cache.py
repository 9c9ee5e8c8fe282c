# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""pytest's cache (config.cache) from tests: a value set by one test is there for the
next (run with --cache-clear, so that each run starts without it)."""

KEY = "parity/value"


def test_sets_a_value(request):
    cache = request.config.cache
    assert cache.get(KEY, None) is None
    cache.set(KEY, {"answer": [4, 2]})
    assert cache.get(KEY, None) == {"answer": [4, 2]}


def test_reads_it_back(request):
    assert request.config.cache.get(KEY, None) == {"answer": [4, 2]}


def test_not_json(request):
    request.config.cache.set("parity/bad", object())
