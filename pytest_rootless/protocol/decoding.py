"""Decoding a value that came back from a container (the encoding is :mod:`.values`): runs
on the host, on untrusted input. It only ever creates builtin values, and bounds its
work: nesting (MAX_DEPTH), values in all (MAX_ENTRIES), members of one hash in a set or
dict (MAX_SHARED_HASH: a set of ints with one hash costs quadratic time to build), and
the caller's deadline."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import pathlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Final, TypeVar

from .values import (
    _AS_IS,
    _HEX_INT,
    _NON_FINITE,
    _PAYLOAD,
    _TAG,
    MAX_DEPTH,
    Failure,
    _short_repr,
    type_name,
)

#: Values decoded between two looks at the clock.
_CLOCK_EVERY: Final = 4096


_T = TypeVar("_T")

#: How many values (every element, key and value, at any depth) one decoded value holds
#: at most; a frame's size bounds it already, this bounds the host's work on it.
MAX_ENTRIES: Final = 10_000_000
#: How many distinct elements of one set, or keys of one dict, may share a hash: Python
#: compares every pair of them when building it, so a value made of ints that all hash
#: alike (n and n + k * (2**61 - 1)) costs quadratic time. Distinct values sharing a
#: hash are otherwise rare (-1 and -2 do).
MAX_SHARED_HASH: Final = 32


class DecodeTimeout(TimeoutError):
    """Decoding a value took longer than its deadline (see :func:`decode_value`)."""


class _Budget:
    """What decoding one value may still do: entries, and time until a deadline."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.entries = 0

    def spend(self, count: int) -> None:
        self.entries += count
        if self.entries > MAX_ENTRIES:
            raise Failure(f"more than {MAX_ENTRIES} values")

    def tick(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DecodeTimeout("decoding the value took longer than its deadline")


def decode_value(data: object, deadline: float | None = None) -> object:
    """The value that :func:`encode_value` encoded as ``data``.

    ``data`` comes from an untrusted container: anything :func:`encode_value` could not
    have produced (an unknown tag, a wrong shape, bad base64, nesting deeper than
    :data:`MAX_DEPTH`), more than :data:`MAX_ENTRIES` values, or a set or dict with more
    than :data:`MAX_SHARED_HASH` members of one hash, is a :class:`ValueError`. Past
    ``deadline`` (a ``time.monotonic()``), :class:`DecodeTimeout`. Only builtin values
    are created.
    """
    return decode_root(data, "result", deadline)


def decode_root(data: object, root: str, deadline: float | None = None) -> object:
    try:
        return _decode(data, 0, _Budget(deadline))
    except Failure as failure:
        raise ValueError(f"{failure.path(root)}: {failure.reason}") from None


def _decode(data: object, depth: int, budget: _Budget) -> object:
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        assert isinstance(data, list)
        _check_depth(depth)
        return _decode_items(data, depth + 1, budget, is_set=False)
    if kind is dict:
        assert isinstance(data, dict)
        if _TAG in data:
            return _decode_tagged(data, depth, budget)
        _check_depth(depth)
        budget.spend(len(data))
        plain: dict[str, object] = {}
        for key, item in data.items():
            if type(key) is not str:
                raise Failure(f"an object key is not a string but {type_name(type(key))}")
            if type(item) in _AS_IS:
                plain[key] = item
                continue
            try:
                plain[key] = _decode(item, depth + 1, budget)
            except Failure as failure:
                raise failure.at(f"[{_short_repr(key)}]") from None
        return plain
    raise Failure(f"not JSON data: an object of type {type_name(kind)}")


def _check_depth(depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise Failure(f"nested deeper than {MAX_DEPTH} levels")


def _decode_items(data: list[object], depth: int, budget: _Budget, *, is_set: bool) -> list[object]:
    budget.spend(len(data))
    items: list[object] = []
    for index, item in enumerate(data):
        if type(item) in _AS_IS:
            items.append(item)
            continue
        if index % _CLOCK_EVERY == 0:
            budget.tick()
        try:
            items.append(_decode(item, depth, budget))
        except Failure as failure:
            raise failure.at(f"<element {index}>" if is_set else f"[{index}]") from None
    return items


def _decode_tagged(data: dict[object, object], depth: int, budget: _Budget) -> object:
    if len(data) != 2 or _PAYLOAD not in data:
        raise Failure(f"a tagged value must have exactly the keys {_TAG!r} and {_PAYLOAD!r}")
    tag = data[_TAG]
    payload = data[_PAYLOAD]
    if type(tag) is not str:
        raise Failure(f"a tag is not a string but {type_name(type(tag))}")
    assert isinstance(tag, str)
    if tag in ("tuple", "set", "frozenset", "dict"):
        return _decode_container(tag, payload, depth, budget)
    decode = _SCALARS.get(tag)
    if decode is None:
        raise Failure(f"unknown tag {_short_repr(tag)}")
    return decode(tag, payload)


def _decode_container(tag: str, payload: object, depth: int, budget: _Budget) -> object:
    _check_depth(depth)
    items = _expect(payload, list, tag)
    if tag == "dict":
        return _decode_pairs(items, depth + 1, budget)
    values = _decode_items(items, depth + 1, budget, is_set=tag != "tuple")
    if tag == "tuple":
        return tuple(values)
    try:
        _check_shared_hashes(tag, values)
        members = set(values)
    except TypeError:
        raise Failure(f"a {tag} holds an unhashable element") from None
    if len(members) != len(values):
        raise Failure(f"a {tag} holds the same element twice")
    return members if tag == "set" else frozenset(members)


def _check_shared_hashes(tag: str, members: list[object]) -> None:
    """Before a set is built from ``members`` (see MAX_SHARED_HASH): hashes counted in a
    dict of ints, which no container chose (an int's hash is itself, almost always)."""
    counts = Counter(hash(member) for member in members)
    if counts and max(counts.values()) > MAX_SHARED_HASH:
        raise Failure(
            f"a {tag} holds more than {MAX_SHARED_HASH} elements with one hash "
            "(which would take the host quadratic time to build)"
        )


def _decode_bytes(tag: str, payload: object) -> object:
    text = _expect(payload, str, tag)
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except ValueError:  # binascii.Error, or UnicodeEncodeError for non-ASCII text
        raise Failure(f"the payload of a {tag} is not valid base64") from None
    return raw if tag == "bytes" else bytearray(raw)


def _decode_int(tag: str, payload: object) -> object:
    text = _expect(payload, str, tag)
    if not _HEX_INT.fullmatch(text):
        raise Failure("the payload of an int is not a hexadecimal number")
    return int(text, 16)


def _decode_float(tag: str, payload: object) -> object:
    text = _expect(payload, str, tag)
    if text not in _NON_FINITE:
        raise Failure("the payload of a float is not 'nan', 'inf' or '-inf'")
    return _NON_FINITE[text]


def _decode_path(tag: str, payload: object) -> object:
    kinds = {
        "path": pathlib.Path,
        "pureposixpath": pathlib.PurePosixPath,
        "purewindowspath": pathlib.PureWindowsPath,
    }
    return kinds[tag](_expect(payload, str, tag))


def _decode_moment(tag: str, payload: object) -> object:
    text = _expect(payload, str, tag)
    parsers: dict[str, Callable[[str], object]] = {
        "datetime": dt.datetime.fromisoformat,
        "date": dt.date.fromisoformat,
        "time": dt.time.fromisoformat,
    }
    try:
        return parsers[tag](text)
    except ValueError:
        raise Failure(f"the payload of a {tag} is not an ISO 8601 {tag}") from None


def _decode_timedelta(tag: str, payload: object) -> object:
    parts = _expect(payload, list, tag)
    numbers = [part for part in parts if isinstance(part, int) and type(part) is not bool]
    if len(parts) != 3 or len(numbers) != 3:
        raise Failure("the payload of a timedelta is not [days, seconds, microseconds]")
    days, seconds, microseconds = numbers
    try:
        return dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)
    except OverflowError:
        raise Failure("a timedelta is out of range") from None


def _decode_decimal(tag: str, payload: object) -> object:
    text = _expect(payload, str, tag)
    with decimal.localcontext() as context:
        context.traps[decimal.InvalidOperation] = True
        try:
            return decimal.Decimal(text)
        except (ArithmeticError, ValueError):
            raise Failure("the payload of a Decimal is not a decimal number") from None


#: The decoder of each tag that holds no other value: (tag, payload) -> the value.
_SCALARS: Final[dict[str, Callable[[str, object], object]]] = {
    "bytes": _decode_bytes,
    "bytearray": _decode_bytes,
    "int": _decode_int,
    "float": _decode_float,
    "path": _decode_path,
    "pureposixpath": _decode_path,
    "purewindowspath": _decode_path,
    "datetime": _decode_moment,
    "date": _decode_moment,
    "time": _decode_moment,
    "timedelta": _decode_timedelta,
    "decimal": _decode_decimal,
}


def _decode_pairs(pairs: list[object], depth: int, budget: _Budget) -> dict[object, object]:
    budget.spend(len(pairs))
    result: dict[object, object] = {}
    hashes: Counter[int] = Counter()
    for index, pair in enumerate(pairs):
        if type(pair) is not list or len(pair) != 2:
            raise Failure("a dict entry is not a [key, value] pair").at(f"<key {index}>")
        if index % _CLOCK_EVERY == 0:
            budget.tick()
        try:
            key = _decode(pair[0], depth, budget)
        except Failure as failure:
            raise failure.at(f"<key {index}>") from None
        try:
            shared = hashes[hash(key)] = hashes[hash(key)] + 1
            if shared > MAX_SHARED_HASH:
                raise Failure(
                    f"a dict holds more than {MAX_SHARED_HASH} keys with one hash "
                    "(which would take the host quadratic time to build)"
                ).at(f"<key {index}>")
            if key in result:
                raise Failure("a dict holds the same key twice").at(f"<key {index}>")
        except TypeError:
            raise Failure("a dict key is unhashable").at(f"<key {index}>") from None
        try:
            result[key] = _decode(pair[1], depth, budget)
        except Failure as failure:
            raise failure.at(f"[{_short_repr(key)}]") from None
    return result


def _expect(payload: object, kind: type[_T], tag: str) -> _T:
    if type(payload) is not kind:
        raise Failure(f"the payload of a {tag} is not a {kind.__name__}")
    assert isinstance(payload, kind)
    return payload
