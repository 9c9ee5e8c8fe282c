"""Values and exceptions that come back from a container, as data and never as pickles.

``Container.run`` ships a function *into* a container (by fork and cloudpickle) but what
comes *out* must not be unpickled on the host: unpickling runs whatever ``__reduce__`` a
hostile test chose. So a result is turned into JSON-compatible data here
(:func:`encode_value`, run inside the container) and rebuilt on the host
(:func:`decode_value`), which only ever creates builtin values and never evaluates,
imports or looks anything up by a name that came from the container, apart from builtin
exception classes (:func:`decode_exception`).

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
import builtins
import datetime as dt
import decimal
import math
import pathlib
import re
import traceback
from typing import Final, TypeVar

__all__ = [
    "ENCODING_VERSION",
    "MAX_DEPTH",
    "EncodeError",
    "RemoteError",
    "decode_exception",
    "decode_value",
    "encode_exception",
    "encode_value",
]

#: The version of this encoding, for a peer to check that it speaks the same one.
ENCODING_VERSION: Final[int] = 1
#: How many containers (lists, dicts, tuples, sets) may nest in a value, on both sides.
MAX_DEPTH: Final = 100
#: How many exception groups may nest in an exception.
MAX_GROUP_DEPTH: Final = 20

_T = TypeVar("_T")

_TAG: Final = "$t"
_PAYLOAD: Final = "v"
_INT_LIMIT: Final = 2**63
_HEX_INT: Final = re.compile(r"-?[0-9a-f]+")
_NON_FINITE: Final = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: Types that are the same in a value and in its encoding (ints may be too big for JSON).
_AS_IS: Final = frozenset({str, bool, type(None)})
_TRACEBACK_NOTE: Final = "Traceback in the container:\n"
#: Raised in a container, these are rebuilt as RemoteError: the host never gets a
#: KeyboardInterrupt or SystemExit out of a container (it would stop the session).
_CONTROL_FLOW: Final = (KeyboardInterrupt, SystemExit, GeneratorExit)
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


class RemoteError(Exception):
    """An exception raised inside a container whose type is not a builtin exception.

    Attributes: type_name (e.g. "mypkg.errors.Boom"), message (str(exc) inside),
    remote_traceback (the formatted traceback text from inside). str() shows
    "type_name: message"; the remote traceback is attached with add_note() so pytest
    prints it in the failure output.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(type_name, message, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        if remote_traceback:
            self.add_note(_TRACEBACK_NOTE + remote_traceback.rstrip("\n"))

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.type_name!r}, {self.message!r})"


class _Failure(Exception):
    """Internal: what went wrong, and the path to it (collected while unwinding)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.segments: list[str] = []

    def at(self, segment: str) -> _Failure:
        self.segments.append(segment)
        return self

    def path(self, root: str) -> str:
        return root + "".join(reversed(self.segments))


def _short_repr(obj: object, limit: int = 60) -> str:
    try:
        text = repr(obj)
    except Exception:
        return f"<{_type_name(type(obj))}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(cls: type) -> str:
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
    return _encode_root(value, "result")


def _encode_root(value: object, root: str) -> object:
    try:
        return _encode(value, 0, set())
    except _Failure as failure:
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
            raise _Failure(f"nested deeper than {MAX_DEPTH} levels")
        key = id(value)
        if key in active:
            raise _Failure(f"the value contains itself (a cycle through a {kind.__name__})")
        active.add(key)
        try:
            return _encode_container(value, depth + 1, active)
        finally:
            active.discard(key)
    raise _Failure(_unsupported(value))


def _unsupported(value: object) -> str:
    reason = f"cannot return an object of type {_type_name(type(value))}"
    for base in _PLAIN_BASES:
        if isinstance(value, base):
            plain = _type_name(base)
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
        except _Failure as failure:
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
            except _Failure as failure:
                raise failure.at(f"[{_short_repr(key)}]") from None
        return plain
    # Keys that JSON cannot hold, or a plain dict with a "$t" key: a list of pairs.
    pairs: list[object] = []
    for index, (key, item) in enumerate(value.items()):
        try:
            encoded_key = _encode(key, depth, active)
        except _Failure as failure:
            raise failure.at(f"<key {index}>") from None
        try:
            pairs.append([encoded_key, _encode(item, depth, active)])
        except _Failure as failure:
            raise failure.at(f"[{_short_repr(key)}]") from None
    return _tagged("dict", pairs)


def _tagged(tag: str, payload: object) -> dict[str, object]:
    return {_TAG: tag, _PAYLOAD: payload}


# --- values: decoding (runs on the host, on untrusted input) -------------------------------


def decode_value(data: object) -> object:
    """The value that :func:`encode_value` encoded as ``data``.

    ``data`` comes from an untrusted container: anything :func:`encode_value` could not
    have produced (an unknown tag, a wrong shape, bad base64, nesting deeper than
    :data:`MAX_DEPTH`) is a :class:`ValueError`. Only builtin values are created.
    """
    return _decode_root(data, "result")


def _decode_root(data: object, root: str) -> object:
    try:
        return _decode(data, 0)
    except _Failure as failure:
        raise ValueError(f"{failure.path(root)}: {failure.reason}") from None


def _decode(data: object, depth: int) -> object:
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        assert isinstance(data, list)
        _check_depth(depth)
        return _decode_items(data, depth + 1, is_set=False)
    if kind is dict:
        assert isinstance(data, dict)
        if _TAG in data:
            return _decode_tagged(data, depth)
        _check_depth(depth)
        plain: dict[str, object] = {}
        for key, item in data.items():
            if type(key) is not str:
                raise _Failure(f"an object key is not a string but {_type_name(type(key))}")
            if type(item) in _AS_IS:
                plain[key] = item
                continue
            try:
                plain[key] = _decode(item, depth + 1)
            except _Failure as failure:
                raise failure.at(f"[{_short_repr(key)}]") from None
        return plain
    raise _Failure(f"not JSON data: an object of type {_type_name(kind)}")


def _check_depth(depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise _Failure(f"nested deeper than {MAX_DEPTH} levels")


def _decode_items(data: list[object], depth: int, *, is_set: bool) -> list[object]:
    items: list[object] = []
    for index, item in enumerate(data):
        if type(item) in _AS_IS:
            items.append(item)
            continue
        try:
            items.append(_decode(item, depth))
        except _Failure as failure:
            raise failure.at(f"<element {index}>" if is_set else f"[{index}]") from None
    return items


def _decode_tagged(data: dict[object, object], depth: int) -> object:
    if len(data) != 2 or _PAYLOAD not in data:
        raise _Failure(f"a tagged value must have exactly the keys {_TAG!r} and {_PAYLOAD!r}")
    tag = data[_TAG]
    payload = data[_PAYLOAD]
    if type(tag) is not str:
        raise _Failure(f"a tag is not a string but {_type_name(type(tag))}")
    assert isinstance(tag, str)
    if tag in ("tuple", "set", "frozenset", "dict"):
        _check_depth(depth)
        items = _expect(payload, list, tag)
        if tag == "dict":
            return _decode_pairs(items, depth + 1)
        values = _decode_items(items, depth + 1, is_set=tag != "tuple")
        if tag == "tuple":
            return tuple(values)
        try:
            members = set(values)
        except TypeError:
            raise _Failure(f"a {tag} holds an unhashable element") from None
        if len(members) != len(values):
            raise _Failure(f"a {tag} holds the same element twice")
        return members if tag == "set" else frozenset(members)
    if tag in ("bytes", "bytearray"):
        text = _expect(payload, str, tag)
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except ValueError:  # binascii.Error, or UnicodeEncodeError for non-ASCII text
            raise _Failure(f"the payload of a {tag} is not valid base64") from None
        return raw if tag == "bytes" else bytearray(raw)
    if tag == "int":
        text = _expect(payload, str, tag)
        if not _HEX_INT.fullmatch(text):
            raise _Failure("the payload of an int is not a hexadecimal number")
        return int(text, 16)
    if tag == "float":
        text = _expect(payload, str, tag)
        if text not in _NON_FINITE:
            raise _Failure("the payload of a float is not 'nan', 'inf' or '-inf'")
        return _NON_FINITE[text]
    if tag == "path":
        return pathlib.Path(_expect(payload, str, tag))
    if tag == "pureposixpath":
        return pathlib.PurePosixPath(_expect(payload, str, tag))
    if tag == "purewindowspath":
        return pathlib.PureWindowsPath(_expect(payload, str, tag))
    if tag in ("datetime", "date", "time"):
        text = _expect(payload, str, tag)
        try:
            if tag == "datetime":
                return dt.datetime.fromisoformat(text)
            if tag == "date":
                return dt.date.fromisoformat(text)
            return dt.time.fromisoformat(text)
        except ValueError:
            raise _Failure(f"the payload of a {tag} is not an ISO 8601 {tag}") from None
    if tag == "timedelta":
        parts = _expect(payload, list, tag)
        numbers = [part for part in parts if isinstance(part, int) and type(part) is not bool]
        if len(parts) != 3 or len(numbers) != 3:
            raise _Failure("the payload of a timedelta is not [days, seconds, microseconds]")
        days, seconds, microseconds = numbers
        try:
            return dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)
        except OverflowError:
            raise _Failure("a timedelta is out of range") from None
    if tag == "decimal":
        text = _expect(payload, str, tag)
        with decimal.localcontext() as context:
            context.traps[decimal.InvalidOperation] = True
            try:
                return decimal.Decimal(text)
            except (ArithmeticError, ValueError):
                raise _Failure("the payload of a Decimal is not a decimal number") from None
    raise _Failure(f"unknown tag {_short_repr(tag)}")


def _decode_pairs(pairs: list[object], depth: int) -> dict[object, object]:
    result: dict[object, object] = {}
    for index, pair in enumerate(pairs):
        if type(pair) is not list or len(pair) != 2:
            raise _Failure("a dict entry is not a [key, value] pair").at(f"<key {index}>")
        try:
            key = _decode(pair[0], depth)
        except _Failure as failure:
            raise failure.at(f"<key {index}>") from None
        try:
            if key in result:
                raise _Failure("a dict holds the same key twice").at(f"<key {index}>")
        except TypeError:
            raise _Failure("a dict key is unhashable").at(f"<key {index}>") from None
        try:
            result[key] = _decode(pair[1], depth)
        except _Failure as failure:
            raise failure.at(f"[{_short_repr(key)}]") from None
    return result


def _expect(payload: object, kind: type[_T], tag: str) -> _T:
    if type(payload) is not kind:
        raise _Failure(f"the payload of a {tag} is not a {kind.__name__}")
    assert isinstance(payload, kind)
    return payload


# --- exceptions ----------------------------------------------------------------------------


def encode_exception(exc: BaseException) -> dict[str, object]:
    """``exc`` (raised in a container) as data for :func:`decode_exception` on the host.

    Never raises for a misbehaving exception (a ``__str__`` that raises, arguments that
    are not data): what cannot be encoded is left out or replaced by text.
    """
    return _encode_exception(exc, 0)


def _encode_exception(exc: BaseException, depth: int) -> dict[str, object]:
    cls = type(exc)
    module = getattr(cls, "__module__", None)
    data: dict[str, object] = {
        "type": _type_name(cls),
        "module": module if isinstance(module, str) else "",
        "name": str(getattr(cls, "__qualname__", None) or cls.__name__),
        "args": _encode_args(exc),
        "message": _safe_str(exc),
        "traceback": _format_traceback(exc),
    }
    if isinstance(exc, OSError):
        data["errno"] = exc.errno if type(exc.errno) is int else None
        data["strerror"] = exc.strerror if type(exc.strerror) is str else None
        data["filename"] = _encode_loosely(exc.filename)
        data["filename2"] = _encode_loosely(exc.filename2)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list) and notes:
        data["notes"] = [note if type(note) is str else _safe_str(note) for note in notes]
    if isinstance(exc, BaseExceptionGroup) and depth < MAX_GROUP_DEPTH:
        data["group_message"] = _safe_str(exc.message)
        data["exceptions"] = [_encode_exception(sub, depth + 1) for sub in exc.exceptions]
    return data


def _encode_args(exc: BaseException) -> list[object] | None:
    try:
        args = exc.args
        if type(args) is not tuple:
            return None
        return [_encode_root(arg, f"args[{i}]") for i, arg in enumerate(args)]
    except Exception:  # EncodeError, or anything a broken exception does
        return None


def _encode_loosely(value: object) -> object:
    try:
        return _encode_root(value, "value")
    except Exception:
        return _safe_str(value)


def _safe_str(obj: object) -> str:
    try:
        return str(obj)
    except Exception as exc:
        return f"<str() of a {_type_name(type(obj))} failed with {_type_name(type(exc))}>"


def _format_traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception as error:
        return (
            f"{_type_name(type(exc))}: {_safe_str(exc)}\n"
            f"(the traceback could not be formatted: {_safe_str(error)})\n"
        )


def decode_exception(data: object) -> BaseException:
    """The exception that :func:`encode_exception` encoded, to raise on the host.

    A builtin exception type (looked up by name in :mod:`builtins` only: nothing is ever
    imported) comes back as that type with its arguments, an ``OSError`` with its
    ``errno``/``filename``; any other type, and ``KeyboardInterrupt``/``SystemExit``/
    ``GeneratorExit``, as :class:`RemoteError`. The traceback from inside is attached as a
    note. Malformed ``data`` is a :class:`ValueError`.
    """
    return _decode_exception(data, 0)


def _decode_exception(data: object, depth: int) -> BaseException:
    if type(data) is not dict:
        raise ValueError(f"an encoded exception is not an object but {_type_name(type(data))}")
    assert isinstance(data, dict)
    type_name = _field(data, "type", str)
    module = _field(data, "module", str)
    name = _field(data, "name", str)
    message = _field(data, "message", str)
    remote_traceback = _optional(data, "traceback", str) or ""
    raw_args = _optional(data, "args", list)
    args = None
    if raw_args is not None:
        args = tuple(_decode_root(arg, f"args[{i}]") for i, arg in enumerate(raw_args))
    notes = _optional(data, "notes", list) or []
    if any(type(note) is not str for note in notes):
        raise ValueError("an encoded exception has a note that is not a string")

    # Every field is checked whatever the type, so malformed data fails the same way always.
    os_args = _os_error_arguments(data)
    group_args = _group_arguments(data, depth)

    cls = _builtin_exception(module, name)
    exc: BaseException | None = None
    if cls is not None and not issubclass(cls, _CONTROL_FLOW):
        exc = _rebuild(cls, args, message, os_args, group_args)
    if exc is None:
        remote = RemoteError(type_name, message, remote_traceback)
        if notes:  # the exception's own notes first, then the traceback, as for builtins
            remote.__notes__ = [*notes, *getattr(remote, "__notes__", [])]
        return remote
    for note in notes:
        exc.add_note(note)
    if remote_traceback:
        exc.add_note(_TRACEBACK_NOTE + remote_traceback.rstrip("\n"))
    return exc


def _field(data: dict[object, object], key: str, kind: type[_T]) -> _T:
    value = _optional(data, key, kind)
    if value is None:
        raise ValueError(f"an encoded exception has no {key!r}")
    return value


def _optional(data: dict[object, object], key: str, kind: type[_T]) -> _T | None:
    value = data.get(key)
    if value is None:
        return None
    if type(value) is not kind:
        raise ValueError(f"the {key!r} of an encoded exception is not a {kind.__name__}")
    assert isinstance(value, kind)
    return value


def _builtin_exception(module: str, name: str) -> type[BaseException] | None:
    if module != "builtins" or not name.isidentifier():
        return None
    found = vars(builtins).get(name)
    if (
        isinstance(found, type)
        and issubclass(found, BaseException)
        and found.__module__ == "builtins"
    ):
        return found
    return None


def _rebuild(
    cls: type[BaseException],
    args: tuple[object, ...] | None,
    message: str,
    os_args: tuple[object, ...] | None,
    group_args: tuple[object, ...] | None,
) -> BaseException | None:
    attempts: list[tuple[object, ...]] = []
    if issubclass(cls, BaseExceptionGroup):
        if group_args is None:
            return None
        attempts.append(group_args)
    else:
        if issubclass(cls, OSError) and os_args is not None:
            attempts.append(os_args)
        if args is not None:
            attempts.append(args)
        attempts.append((message,))
    for attempt in attempts:
        try:
            # cls is a builtin exception class: constructing it runs no foreign code. For
            # OSError itself the errno picks the subclass (13 gives PermissionError).
            return cls(*attempt)
        except Exception:
            continue
    return None


def _os_error_arguments(data: dict[object, object]) -> tuple[object, ...] | None:
    errno = data.get("errno")
    if errno is not None and type(errno) is not int:
        raise ValueError("the 'errno' of an encoded exception is not an int")
    strerror = _optional(data, "strerror", str)
    filename = _decode_root(data.get("filename"), "filename")
    filename2 = _decode_root(data.get("filename2"), "filename2")
    if errno is None:
        return None
    if filename2 is not None:
        return (errno, strerror, filename, None, filename2)
    if filename is not None:
        return (errno, strerror, filename)
    return (errno, strerror)


def _group_arguments(data: dict[object, object], depth: int) -> tuple[object, ...] | None:
    subs = data.get("exceptions")
    group_message = data.get("group_message")
    if subs is None and group_message is None:
        return None
    if type(subs) is not list or not subs or type(group_message) is not str:
        raise ValueError("an encoded exception group is malformed")
    if depth >= MAX_GROUP_DEPTH:
        raise ValueError(f"exception groups nested deeper than {MAX_GROUP_DEPTH} levels")
    assert isinstance(subs, list)
    return (group_message, [_decode_exception(sub, depth + 1) for sub in subs])
