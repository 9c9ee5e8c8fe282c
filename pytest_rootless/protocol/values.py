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
from typing import Final, TypeVar

__all__ = [
    "ENCODING_VERSION",
    "MAX_DEPTH",
    "EncodeError",
    "encode_value",
]

#: The version of this encoding, for a peer to check that it speaks the same one.
ENCODING_VERSION: Final[int] = 1
#: How many containers (lists, dicts, tuples, sets) may nest in a value, on both sides.
MAX_DEPTH: Final = 100

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
