"""Values that come back from a container, as data and never as pickles (exceptions: see
:mod:`.errors`).

``Container.run`` ships a function *into* a container (by fork and cloudpickle) but what
comes *out* must not be unpickled on the host: unpickling runs whatever ``__reduce__`` a
hostile test chose. So a result is turned into JSON-compatible data here
(:func:`encode_value`, run inside the container) and rebuilt on the host
(:func:`decode_value`), which only ever creates builtin values and never evaluates,
imports or looks anything up by a name that came from the container, apart from builtin
exception classes (:func:`.errors.decode_exception`).

Plain JSON values travel as themselves. Everything else is a *tag*: a JSON object with
exactly the keys ``"$t"`` (the kind) and ``"v"`` (its payload)::

    b"hi"                 {"$t": "bytes", "v": "aGk="}
    (1, 2)                {"$t": "tuple", "v": [1, 2]}
    {1: "a"}              {"$t": "dict", "v": [[1, "a"]]}
    {"$t": 0}             {"$t": "dict", "v": [["$t", 0]]}   (a plain dict is escaped)
    float("nan")          {"$t": "float", "v": "nan"}
    2**64                 {"$t": "int", "v": "10000000000000000"}   (hex, any size)

Integers outside the signed 64-bit range are sent in hexadecimal, so that neither JSON
consumers nor Python's limit on decimal integer conversion get in the way. A ``datetime``
with a ``tzinfo`` comes back with a fixed-offset ``datetime.timezone`` (equal to the
original, as aware datetimes compare in UTC), and ``fold`` is not kept.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import pathlib
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = [
    "ENCODING_VERSION",
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_SHARED_HASH",
    "DecodeTimeout",
    "EncodeError",
    "decode_value",
    "encode_value",
]

#: The version of this encoding, for a peer to check that it speaks the same one.
ENCODING_VERSION: Final[int] = 1
#: How many containers (lists, dicts, tuples, sets) may nest in a value, on both sides.
MAX_DEPTH: Final = 100
#: How many values (every element, key and value, at any depth) one decoded value holds
#: at most; a frame's size bounds it already, this bounds the host's work on it.
MAX_ENTRIES: Final = 10_000_000
#: How many distinct elements of one set, or keys of one dict, may share a hash: Python
#: compares every pair of them when building it, so a value made of ints that all hash
#: alike (n and n + k * (2**61 - 1)) costs quadratic time. Distinct values sharing a
#: hash are otherwise rare (-1 and -2 do).
MAX_SHARED_HASH: Final = 32
#: Values decoded between two looks at the clock.
_CLOCK_EVERY: Final = 4096

_T = TypeVar("_T")

_TAG: Final = "$t"
_PAYLOAD: Final = "v"
_INT_LIMIT: Final = 2**63
_HEX_INT: Final = re.compile(r"-?[0-9a-f]+")
_NON_FINITE: Final = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: Types that are the same in a value and in its encoding (ints may be too big for JSON).
_AS_IS: Final = frozenset({str, bool, type(None)})
_SUPPORTED: Final = (
    "None, bool, int, float, str, bytes, bytearray, list, tuple, dict, set, frozenset, "
    "pathlib paths, datetime, date, time, timedelta and Decimal"
)
#: For a subclass of a supported type: the plain type to convert it to.
_PLAIN_BASES: Final = (
    bool,
    int,
    float,
    str,
    bytes,
    bytearray,
    list,
    tuple,
    dict,
    set,
    frozenset,
    decimal.Decimal,
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
)


class EncodeError(TypeError):
    """A value that a container tried to return cannot be sent as data; the message names
    its type and where it sits (e.g. "result[2]['key']: cannot return an object of type Foo").
    """

    def __init__(self, message: str, path: str = "result") -> None:
        super().__init__(message)
        #: Where the offending object sits, e.g. ``result[2]['key']``.
        self.path = path


def _short_repr(obj: object, limit: int = 60) -> str:
    try:
        text = repr(obj)
    except Exception:
        return f"<{type_name(type(obj))}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or cls.__name__
    if not isinstance(module, str) or module == "builtins":
        return str(name)
    return f"{module}.{name}"


# --- values: encoding (runs inside the container) ------------------------------------------


def encode_value(value: object) -> object:
    """``value`` as a JSON-compatible structure, or :class:`EncodeError` naming what and where.

    Only the exact types listed in the module docstring are accepted (a subclass of ``dict``
    or ``int`` is refused rather than silently changed), and nothing of the value is called
    but the ``isoformat``/``str`` of dates, paths and decimals.
    """
    return encode_root(value, "result")


def encode_root(value: object, root: str) -> object:
    try:
        return _encode(value, 0, set())
    except Failure as failure:
        path = failure.path(root)
        raise EncodeError(f"{path}: {failure.reason}", path) from None


def _encode(value: object, depth: int, active: set[int]) -> object:
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        assert isinstance(value, int)
        if -_INT_LIMIT <= value < _INT_LIMIT:
            return value
        return _tagged("int", format(value, "x"))
    if kind is float:
        assert isinstance(value, float)
        if math.isfinite(value):
            return value
        return _tagged("float", "nan" if math.isnan(value) else "inf" if value > 0 else "-inf")
    if kind is bytes or kind is bytearray:
        assert isinstance(value, bytes | bytearray)
        return _tagged(kind.__name__, base64.b64encode(value).decode("ascii"))
    if isinstance(value, pathlib.PurePath):
        if isinstance(value, pathlib.Path):
            return _tagged("path", str(value))
        if isinstance(value, pathlib.PureWindowsPath):
            return _tagged("purewindowspath", str(value))
        return _tagged("pureposixpath", str(value))
    if kind is dt.datetime or kind is dt.date or kind is dt.time:
        assert isinstance(value, dt.date | dt.time)
        return _tagged(kind.__name__, value.isoformat())
    if kind is dt.timedelta:
        assert isinstance(value, dt.timedelta)
        return _tagged("timedelta", [value.days, value.seconds, value.microseconds])
    if kind is decimal.Decimal:
        return _tagged("decimal", str(value))
    if kind in (list, tuple, set, frozenset, dict):
        if depth >= MAX_DEPTH:
            raise Failure(f"nested deeper than {MAX_DEPTH} levels")
        key = id(value)
        if key in active:
            raise Failure(f"the value contains itself (a cycle through a {kind.__name__})")
        active.add(key)
        try:
            return _encode_container(value, depth + 1, active)
        finally:
            active.discard(key)
    raise Failure(_unsupported(value))


def _unsupported(value: object) -> str:
    reason = f"cannot return an object of type {type_name(type(value))}"
    for base in _PLAIN_BASES:
        if isinstance(value, base):
            plain = type_name(base)
            return f"{reason} (a subclass of {plain}: convert it to a plain {plain} first)"
    return f"{reason} (only data comes back from a container: {_SUPPORTED})"


def _encode_container(value: object, depth: int, active: set[int]) -> object:
    if isinstance(value, dict):
        return _encode_dict(value, depth, active)
    assert isinstance(value, list | tuple | set | frozenset)
    is_set = isinstance(value, set | frozenset)
    items: list[object] = []
    for index, item in enumerate(value):
        if type(item) in _AS_IS:  # fast path for the common case
            items.append(item)
            continue
        try:
            items.append(_encode(item, depth, active))
        except Failure as failure:
            raise failure.at(f"<element {index}>" if is_set else f"[{index}]") from None
    if type(value) is list:
        return items
    return _tagged(type(value).__name__, items)


def _encode_dict(value: dict[object, object], depth: int, active: set[int]) -> object:
    if _TAG not in value and all(type(key) is str for key in value):
        plain: dict[object, object] = {}
        for key, item in value.items():
            if type(item) in _AS_IS:
                plain[key] = item
                continue
            try:
                plain[key] = _encode(item, depth, active)
            except Failure as failure:
                raise failure.at(f"[{_short_repr(key)}]") from None
        return plain
    # Keys that JSON cannot hold, or a plain dict with a "$t" key: a list of pairs.
    pairs: list[object] = []
    for index, (key, item) in enumerate(value.items()):
        try:
            encoded_key = _encode(key, depth, active)
        except Failure as failure:
            raise failure.at(f"<key {index}>") from None
        try:
            pairs.append([encoded_key, _encode(item, depth, active)])
        except Failure as failure:
            raise failure.at(f"[{_short_repr(key)}]") from None
    return _tagged("dict", pairs)


def _tagged(tag: str, payload: object) -> dict[str, object]:
    return {_TAG: tag, _PAYLOAD: payload}


# --- values: decoding (runs on the host, on untrusted input) -------------------------------


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


# --- exceptions ----------------------------------------------------------------------------


class Failure(Exception):
    """Internal: what went wrong, and the path to it (collected while unwinding)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.segments: list[str] = []

    def at(self, segment: str) -> Failure:
        self.segments.append(segment)
        return self

    def path(self, root: str) -> str:
        return root + "".join(reversed(self.segments))
