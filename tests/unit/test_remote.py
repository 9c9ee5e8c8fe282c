"""Results and exceptions out of a container: data only, never a pickle."""

from __future__ import annotations

import collections
import copy
import datetime as dt
import decimal
import enum
import errno
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from pytest_rootless.protocol import decoding, framing
from pytest_rootless.protocol.decoding import decode_value
from pytest_rootless.protocol.errors import (
    MAX_GROUP_DEPTH,
    RemoteError,
    decode_exception,
    encode_exception,
)
from pytest_rootless.protocol.values import (
    ENCODING_VERSION,
    MAX_DEPTH,
    EncodeError,
    encode_value,
)

NOTE = "Traceback in the container:\n"


def through_json(data: object) -> Any:
    """What the host receives: strict JSON (no NaN, no Infinity) and back."""
    return json.loads(json.dumps(data, allow_nan=False))


def round_trip(value: object) -> Any:
    return decode_value(through_json(encode_value(value)))


def assert_same(got: object, want: object) -> None:
    """Equal, and of the very same types all the way down (1 is not True, nor 1.0)."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float)
        assert math.isnan(got)
    elif isinstance(want, decimal.Decimal) and want.is_nan():
        assert isinstance(got, decimal.Decimal)
        assert str(got) == str(want)
    elif isinstance(want, float):
        assert got == want
        assert isinstance(got, float)
        assert math.copysign(1, got) == math.copysign(1, want)
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, dict):
        assert isinstance(got, dict)
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    else:
        assert got == want


def ident(value: object) -> str:
    """A short test id (the repr of 10**5000 is refused by Python's digit limit)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"int-of-{value.bit_length()}-bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def test_encoding_version() -> None:
    assert ENCODING_VERSION == 1


# --- values ------------------------------------------------------------------------------


IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

SCALARS = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**63,
    -(2**63) - 1,
    10**5000,  # more digits than Python converts to decimal text by default
    -(7**3000),
    0.0,
    -0.0,
    1.5,
    1e308,
    5e-324,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "héllo wörld ✓",
    "\udc80 surrogate-escaped",
    "$t",
    b"",
    bytes(range(256)),
    bytearray(b"\x00\xff"),
    pathlib.Path("/usr/bin/env"),
    pathlib.Path("relative/dir"),
    pathlib.PurePosixPath("a/b"),
    pathlib.PureWindowsPath(r"C:\Users\x"),
    dt.datetime(2024, 2, 29, 23, 59, 59, 123456),
    dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 1, 1, 12, 30, tzinfo=IST),
    dt.datetime.min,
    dt.datetime.max,
    dt.date(1999, 12, 31),
    dt.time(0, 0),
    dt.time(23, 59, 59, 999999, tzinfo=IST),
    dt.timedelta(0),
    dt.timedelta(days=-3, microseconds=5),
    dt.timedelta.max,
    dt.timedelta.min,
    decimal.Decimal("1.10"),
    decimal.Decimal("-0"),
    decimal.Decimal("1E+999999"),
    decimal.Decimal("NaN"),
    decimal.Decimal("-Infinity"),
]


@pytest.mark.parametrize("value", SCALARS, ids=ident)
def test_scalar_round_trip(value: object) -> None:
    assert_same(round_trip(value), value)


@pytest.mark.parametrize(
    "value",
    [
        [],
        (),
        (1,),
        set(),
        frozenset(),
        {},
        [1, [2, [3, []]]],
        (1, "a", (b"b", None)),
        {1, "a", (2, 3), b"x", frozenset({4})},
        frozenset({pathlib.Path("/x"), dt.date(2020, 1, 1)}),
        {"a": 1, "b": [True, None]},
        {1: "int key", (1, 2): "tuple key", None: 0, b"k": 1, frozenset({1}): 2, 1.5: "f"},
        {dt.date(2020, 1, 1): [decimal.Decimal("2.50")], pathlib.Path("/p"): {"x": (1,)}},
    ],
    ids=ident,
)
def test_container_round_trip(value: object) -> None:
    assert_same(round_trip(value), value)


def test_a_rich_nested_value_round_trips() -> None:
    value = {
        "results": [
            (1, 2.5, math.inf),
            {"blob": b"\x00" * 10, "when": dt.datetime(2024, 5, 1, tzinfo=dt.UTC)},
            {frozenset({"a", "b"}): {("k", 1): [pathlib.Path("/tmp/x"), {decimal.Decimal(1)}]}},
        ],
        "$t": {"$t": "bytes", "v": "aGk="},
        "count": 2**100,
    }
    assert_same(round_trip(value), value)


def test_tag_key_in_a_plain_dict_is_escaped() -> None:
    looks_like_a_tag = {"$t": "bytes", "v": "aGk="}
    encoded = encode_value(looks_like_a_tag)
    assert encoded == {"$t": "dict", "v": [["$t", "bytes"], ["v", "aGk="]]}
    decoded = round_trip([looks_like_a_tag, {"$t": None}])
    assert decoded == [looks_like_a_tag, {"$t": None}]
    assert type(decoded[0]) is dict


def test_plain_values_stay_plain_json() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": []}}
    assert encode_value(value) == value


def test_bytes_and_big_ints_use_compact_text() -> None:
    assert encode_value(b"hi") == {"$t": "bytes", "v": "aGk="}
    assert encode_value(2**64) == {"$t": "int", "v": "10000000000000000"}
    assert encode_value(-(2**64)) == {"$t": "int", "v": "-10000000000000000"}


def test_paths_come_back_as_host_paths() -> None:
    decoded = round_trip([pathlib.Path("/a"), pathlib.PurePosixPath("/b")])
    assert type(decoded[0]) is type(pathlib.Path("/a"))
    assert isinstance(decoded[0], pathlib.Path)
    assert type(decoded[1]) is pathlib.PurePosixPath


def test_aware_datetimes_keep_their_offset() -> None:
    value = dt.datetime(2024, 1, 1, 12, 30, tzinfo=IST)
    decoded = round_trip(value)
    assert decoded.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert decoded == value


def test_through_the_wire_framing() -> None:
    value = {"x": (1, {2}), 3: [b"\xff", math.nan]}
    (message,) = framing.Decoder().feed(
        framing.encode({"kind": "result", "value": encode_value(value)})
    )
    assert_same(decode_value(message["value"]), value)


def nested(levels: int, innermost: object = 0) -> object:
    value = innermost
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_up_to_the_limit_round_trips() -> None:
    for innermost in (0, b"bytes", math.nan, {"$t": 1}, (1,)):
        levels = MAX_DEPTH if innermost not in ({"$t": 1}, (1,)) else MAX_DEPTH - 1
        value = nested(levels, innermost)
        assert_same(round_trip(value), value)


def test_nesting_beyond_the_limit_is_refused_on_both_sides() -> None:
    with pytest.raises(EncodeError, match="deeper than"):
        encode_value(nested(MAX_DEPTH + 1))
    with pytest.raises(EncodeError, match="deeper than"):
        encode_value(nested(MAX_DEPTH, (1,)))
    with pytest.raises(ValueError, match="deeper than"):
        decode_value(nested(MAX_DEPTH + 1))


def test_very_deep_hostile_input_is_a_value_error_not_a_recursion_error() -> None:
    deep: object = 0
    for _ in range(100_000):
        deep = {"$t": "tuple", "v": [deep]}
    with pytest.raises(ValueError, match="deeper than"):
        decode_value(deep)
    with pytest.raises(ValueError, match="deeper than"):
        decode_value(nested(100_000))


# --- what cannot be returned ---------------------------------------------------------------


class Foo:
    pass


def test_error_names_the_type_and_the_path() -> None:
    with pytest.raises(EncodeError) as info:
        encode_value({"k": [1, 2, {"key": Foo()}]})
    message = str(info.value)
    assert message.startswith("result['k'][2]['key']: cannot return an object of type ")
    assert f"{__name__}.Foo" in message
    assert info.value.path == "result['k'][2]['key']"
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (Foo(), "result"),
        ((1, (2, Foo())), "result[1][1]"),
        ({Foo()}, "result<element 0>"),
        ({(1, Foo()): "v"}, "result<key 0>[1]"),
        ({1: [Foo()]}, "result[1][0]"),
        ({"$t": Foo()}, "result['$t']"),
    ],
)
def test_error_paths(value: object, path: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode_value(value)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: cannot return an object of type ")


class Color(enum.IntEnum):
    RED = 1


class Point(NamedTuple):
    x: int
    y: int


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        (collections.OrderedDict(a=1), "dict"),
        (collections.defaultdict(list), "dict"),
        (Color.RED, "int"),
        (Point(1, 2), "tuple"),
    ],
)
def test_subclasses_are_refused_with_a_hint(value: object, plain: str) -> None:
    with pytest.raises(EncodeError, match=f"convert it to a plain {plain} first"):
        encode_value(value)


@pytest.mark.parametrize(
    "value",
    [object(), len, lambda: 0, memoryview(b"x"), range(3), 1j, iter([]), Exception("x")],
    ids=ident,
)
def test_other_objects_are_refused(value: object) -> None:
    with pytest.raises(EncodeError, match="only data comes back from a container"):
        encode_value(value)


def test_cycles_are_an_encode_error() -> None:
    loop: list[object] = [1]
    loop.append(loop)
    with pytest.raises(EncodeError, match=r"^result\[1\]: the value contains itself"):
        encode_value(loop)
    mapping: dict[str, object] = {}
    mapping["self"] = (1, [mapping])
    with pytest.raises(EncodeError, match=r"^result\['self'\]\[1\]\[0\]: .* cycle"):
        encode_value(mapping)


def test_shared_references_are_not_cycles() -> None:
    shared = [1, 2]
    assert round_trip([shared, shared, {"a": shared}]) == [[1, 2], [1, 2], {"a": [1, 2]}]


def test_nothing_is_pickled(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    called: list[str] = []

    class Evil:
        def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
            called.append("__reduce__")
            return (os.system, (f"touch {marker}",))

    with pytest.raises(EncodeError, match=r"result\[0\]\['x'\]: cannot return .*Evil"):
        encode_value([{"x": Evil()}])
    assert encode_exception(ValueError(Evil()))["args"] is None
    assert called == []
    assert not marker.exists()


# --- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"$t": "evil", "v": 1}, "unknown tag"),
        ({"$t": "pickle", "v": "gASVAAAA"}, "unknown tag"),
        ({"$t": 3, "v": ""}, "tag is not a string"),
        ({"$t": "bytes"}, "exactly the keys"),
        ({"$t": "bytes", "v": "", "x": 1}, "exactly the keys"),
        ({"$t": "bytes", "v": 5}, "not a str"),
        ({"$t": "bytes", "v": None}, "not a str"),
        ({"$t": "bytes", "v": "!!!!"}, "base64"),
        ({"$t": "bytes", "v": "aGk"}, "base64"),
        ({"$t": "bytearray", "v": "é"}, "base64"),
        ({"$t": "tuple", "v": "ab"}, "not a list"),
        ({"$t": "set", "v": [[1]]}, "unhashable"),
        ({"$t": "frozenset", "v": [1, 1]}, "twice"),
        ({"$t": "dict", "v": {"a": 1}}, "not a list"),
        ({"$t": "dict", "v": [[1]]}, "pair"),
        ({"$t": "dict", "v": [1, 2]}, "pair"),
        ({"$t": "dict", "v": [[[1], 2]]}, "unhashable"),
        ({"$t": "dict", "v": [[1, 2], [1, 3]]}, "twice"),
        ({"$t": "int", "v": 16}, "not a str"),
        ({"$t": "int", "v": "12g"}, "hexadecimal"),
        ({"$t": "int", "v": "0x10"}, "hexadecimal"),
        ({"$t": "int", "v": " 1"}, "hexadecimal"),
        ({"$t": "float", "v": "1.5"}, "'nan'"),
        ({"$t": "datetime", "v": "yesterday"}, "ISO 8601"),
        ({"$t": "date", "v": 20200101}, "not a str"),
        ({"$t": "time", "v": "25:00"}, "ISO 8601"),
        ({"$t": "timedelta", "v": [1, 2]}, "days, seconds"),
        ({"$t": "timedelta", "v": [True, 0, 0]}, "days, seconds"),
        ({"$t": "timedelta", "v": [1.0, 0, 0]}, "days, seconds"),
        ({"$t": "timedelta", "v": [10**20, 0, 0]}, "out of range"),
        ({"$t": "decimal", "v": "1.2.3"}, "decimal number"),
        ({"$t": "decimal", "v": "__import__('os').system('id')"}, "decimal number"),
        ({"$t": "path", "v": ["/"]}, "not a str"),
        ((1, 2), "not JSON data"),
        (b"raw", "not JSON data"),
        (Foo(), "not JSON data"),
        ({1: 2}, "key is not a string"),
    ],
    ids=ident,
)
def test_malformed_input_is_a_value_error(data: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_value(data)


def test_malformed_input_error_names_the_path() -> None:
    data = [0, {"a": {"$t": "set", "v": [1, {"$t": "evil", "v": 0}]}}]
    with pytest.raises(ValueError, match=r"^result\[1\]\['a'\]<element 1>: unknown tag 'evil'$"):
        decode_value(data)


def test_decimal_checks_do_not_depend_on_the_current_context() -> None:
    with decimal.localcontext() as context:
        context.traps[decimal.InvalidOperation] = False
        with pytest.raises(ValueError, match="decimal number"):
            decode_value({"$t": "decimal", "v": "nonsense"})


# --- exceptions --------------------------------------------------------------------------


def raised_in_container(fn: Callable[[], object]) -> BaseException:
    """What the host gets for an exception raised by ``fn`` in a container."""
    try:
        fn()
    except BaseException as exc:
        data = through_json(encode_exception(exc))
        return decode_exception(data)
    raise AssertionError("fn did not raise")


def raise_(exc: BaseException) -> Callable[[], object]:
    def inside_the_container() -> object:
        raise exc

    return inside_the_container


def traceback_note(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", [])
    assert notes
    assert notes[-1].startswith(NOTE)
    return str(notes[-1])


def test_value_error() -> None:
    exc = raised_in_container(raise_(ValueError("x")))
    assert type(exc) is ValueError
    assert exc.args == ("x",)
    note = traceback_note(exc)
    assert "inside_the_container" in note
    assert note.endswith("ValueError: x")


def test_assertion_error_keeps_its_message() -> None:
    def check() -> None:
        assert 1 + 1 == 3, "arithmetic is broken"

    exc = raised_in_container(check)
    assert type(exc) is AssertionError
    assert str(exc).startswith("arithmetic is broken")


def test_permission_error_keeps_errno_and_filename() -> None:
    exc = raised_in_container(raise_(PermissionError(13, "Permission denied", "/x")))
    assert type(exc) is PermissionError
    assert exc.errno == errno.EACCES
    assert exc.strerror == "Permission denied"
    assert exc.filename == "/x"
    assert str(exc) == "[Errno 13] Permission denied: '/x'"


def test_os_error_is_rebuilt_from_its_errno() -> None:
    data = encode_exception(PermissionError(13, "Permission denied", "/x"))
    data.update(type="OSError", name="OSError")  # an older peer, say
    exc = decode_exception(through_json(data))
    assert type(exc) is PermissionError
    assert exc.errno == errno.EACCES


def test_pytest_raises_works_on_a_decoded_exception() -> None:
    def remove() -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/usr/bin/env")

    with pytest.raises(PermissionError, match="Permission denied") as info:
        raise raised_in_container(remove)
    assert info.value.filename == "/usr/bin/env"


def test_file_not_found_from_a_real_call(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing"
    exc = raised_in_container(lambda: missing.read_text())
    assert type(exc) is FileNotFoundError
    assert exc.errno == errno.ENOENT
    assert exc.filename == str(missing)


def test_filename2_and_bytes_filenames(tmp_path: pathlib.Path) -> None:
    exc = raised_in_container(lambda: os.rename(tmp_path / "a", tmp_path / "b"))
    assert type(exc) is FileNotFoundError
    assert (exc.filename, exc.filename2) == (str(tmp_path / "a"), str(tmp_path / "b"))
    exc = raised_in_container(lambda: os.stat(os.fsencode(tmp_path / "c")))
    assert type(exc) is FileNotFoundError
    assert exc.filename == os.fsencode(tmp_path / "c")


def test_os_error_without_errno() -> None:
    exc = raised_in_container(raise_(FileNotFoundError("just a message")))
    assert type(exc) is FileNotFoundError
    assert exc.args == ("just a message",)
    assert exc.errno is None


def test_key_error() -> None:
    empty: dict[str, int] = {}
    exc = raised_in_container(lambda: empty["k"])
    assert type(exc) is KeyError
    assert exc.args == ("k",)
    assert str(exc) == "'k'"


def test_exceptions_with_structured_args() -> None:
    exc = raised_in_container(lambda: b"\xff".decode())
    assert type(exc) is UnicodeDecodeError
    assert (exc.object, exc.start, exc.reason) == (b"\xff", 0, "invalid start byte")
    exc = raised_in_container(lambda: compile("1 +", "<x>", "exec"))
    assert type(exc) is SyntaxError
    assert exc.filename == "<x>"


def test_args_that_are_not_data_fall_back_to_the_message() -> None:
    original = ValueError(Foo(), 1)
    exc = raised_in_container(raise_(original))
    assert type(exc) is ValueError
    assert exc.args == (str(original),)
    assert "Foo object" in str(exc)


def test_args_that_do_not_fit_the_constructor_fall_back_to_the_message() -> None:
    data = encode_exception(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"))
    data["args"] = ["only one"]
    exc = decode_exception(through_json(data))
    assert type(exc) is RemoteError  # UnicodeDecodeError(message) does not fit either
    assert exc.type_name == "UnicodeDecodeError"
    data = encode_exception(KeyError("k"))
    data["args"] = [1, 2, 3]
    assert decode_exception(through_json(data)).args == (1, 2, 3)


class Boom(Exception):
    pass


def test_custom_exception_becomes_remote_error() -> None:
    exc = raised_in_container(raise_(Boom("it broke")))
    assert isinstance(exc, RemoteError)
    assert exc.type_name == f"{__name__}.Boom"
    assert exc.message == "it broke"
    assert str(exc) == f"{__name__}.Boom: it broke"
    assert "inside_the_container" in exc.remote_traceback
    assert traceback_note(exc) == NOTE + exc.remote_traceback.rstrip("\n")
    assert f"{__name__}.Boom: it broke" in exc.remote_traceback


def test_subclass_of_a_builtin_is_not_a_builtin() -> None:
    class Special(ValueError):
        pass

    exc = raised_in_container(raise_(Special("no")))
    assert isinstance(exc, RemoteError)
    assert exc.type_name.endswith("Special")


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3), GeneratorExit()], ids=ident)
def test_control_flow_exceptions_become_remote_errors(exc: BaseException) -> None:
    got = raised_in_container(raise_(exc))
    assert type(got) is RemoteError
    assert got.type_name == type(exc).__name__
    assert isinstance(got, Exception)


def test_a_broken_str_does_not_break_encoding() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    exc = raised_in_container(raise_(Broken()))
    assert isinstance(exc, RemoteError)
    assert "str() of a" in exc.message


def test_notes_are_kept_before_the_traceback() -> None:
    inner = ValueError("x")
    inner.add_note("a hint")
    exc = raised_in_container(raise_(inner))
    assert exc.__notes__[0] == "a hint"
    assert exc.__notes__[-1].startswith(NOTE)
    boom = Boom("y")
    boom.add_note("another hint")
    remote = raised_in_container(raise_(boom))
    assert remote.__notes__[0] == "another hint"
    assert remote.__notes__[-1].startswith(NOTE)


def test_chained_exceptions_show_in_the_remote_traceback() -> None:
    def chained() -> None:
        try:
            os.environ["PYTEST_ROOTLESS_SURELY_NOT_SET"]
        except KeyError as error:
            raise Boom("wrapped") from error

    exc = raised_in_container(chained)
    note = traceback_note(exc)
    assert "KeyError: 'PYTEST_ROOTLESS_SURELY_NOT_SET'" in note
    assert "direct cause" in note


def test_exception_groups() -> None:
    group = ExceptionGroup("many", [ValueError(1), Boom("b"), ExceptionGroup("inner", [OSError()])])
    exc = raised_in_container(raise_(group))
    assert type(exc) is ExceptionGroup
    assert exc.message == "many"
    first, second, third = exc.exceptions
    assert type(first) is ValueError
    assert first.args == (1,)
    assert isinstance(second, RemoteError)
    assert type(third) is ExceptionGroup
    assert type(third.exceptions[0]) is OSError
    with pytest.raises(ExceptionGroup) as info:
        raise exc
    assert info.group_contains(ValueError)


def test_base_exception_group_with_a_keyboard_interrupt() -> None:
    exc = raised_in_container(raise_(BaseExceptionGroup("stop", [KeyboardInterrupt()])))
    assert isinstance(exc, BaseExceptionGroup)
    assert isinstance(exc.exceptions[0], RemoteError)


def test_remote_error_copies_keep_one_note() -> None:
    exc = RemoteError("pkg.Boom", "m", "Traceback...\n")
    assert exc.__notes__ == [NOTE + "Traceback..."]
    clone = copy.deepcopy(exc)
    assert clone.__notes__ == exc.__notes__
    assert (clone.type_name, clone.message, clone.remote_traceback) == (
        "pkg.Boom",
        "m",
        "Traceback...\n",
    )
    assert str(RemoteError("pkg.Boom", "")) == "pkg.Boom"
    assert not hasattr(RemoteError("pkg.Boom", ""), "__notes__")


# --- hostile exception data ----------------------------------------------------------------


def good() -> dict[str, object]:
    return through_json(encode_exception(ValueError("x")))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "change",
    [
        {"type": None},
        {"module": 1},
        {"message": ["x"]},
        {"args": "x"},
        {"args": [{"$t": "evil", "v": 0}]},
        {"notes": [1]},
        {"traceback": 5},
        {"errno": 13, "filename": {"$t": "evil", "v": 0}},
    ],
    ids=ident,
)
def test_malformed_exception_data_is_a_value_error(change: dict[str, object]) -> None:
    data = good()
    data.update(change)
    with pytest.raises(ValueError):  # noqa: PT011 - any message will do
        decode_exception(data)


@pytest.mark.parametrize("data", [None, [], "ValueError", {"type": "ValueError"}], ids=ident)
def test_exception_data_of_the_wrong_shape(data: object) -> None:
    with pytest.raises(ValueError, match="encoded exception"):
        decode_exception(data)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "__import__"),
        ("builtins", "eval"),
        ("builtins", "object"),
        ("builtins", "type"),
        ("builtins", "SystemExit"),
        ("builtins", "os.system"),
        ("os", "system"),
        ("subprocess", "CalledProcessError"),
        ("a_module_that_must_not_be_imported", "Boom"),
    ],
)
def test_names_from_the_container_are_never_imported_or_called(module: str, name: str) -> None:
    data = good()
    data.update(type=f"{module}.{name}", module=module, name=name, args=["rm -rf /"])
    exc = decode_exception(data)
    assert type(exc) is RemoteError
    assert exc.type_name == f"{module}.{name}"
    assert "a_module_that_must_not_be_imported" not in sys.modules


def test_remote_traceback_shows_in_pytest_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_rootless.protocol.errors import decode_exception, encode_exception

        class Boom(Exception):
            pass

        def deep_inside_the_container():
            raise Boom("kaboom")

        def test_it():
            try:
                deep_inside_the_container()
            except Boom as exc:
                data = encode_exception(exc)
            raise decode_exception(data)
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*RemoteError: test_remote_traceback_shows_in_pytest_output.Boom: kaboom",
            "*Traceback in the container:*",
            "*deep_inside_the_container*",
        ]
    )


def test_notes_without_a_traceback() -> None:
    data = through_json(encode_exception(Boom("x")))
    data.update(traceback="", notes=["only a note"])
    exc = decode_exception(data)
    assert isinstance(exc, RemoteError)
    assert exc.__notes__ == ["only a note"]


def test_a_half_encoded_group_is_malformed() -> None:
    data = through_json(encode_exception(ExceptionGroup("g", [ValueError()])))
    del data["group_message"]
    with pytest.raises(ValueError, match="group"):
        decode_exception(data)


def test_groups_nested_too_deep() -> None:
    group: Exception = ValueError("leaf")
    for level in range(50):
        group = ExceptionGroup(f"level {level}", [group])
    exc = raised_in_container(raise_(group))
    for _ in range(MAX_GROUP_DEPTH):
        assert type(exc) is ExceptionGroup
        exc = exc.exceptions[0]
    assert isinstance(exc, RemoteError)  # the rest is text in the traceback
    assert exc.type_name == "ExceptionGroup"


def test_changes_diff_names_each_kind() -> None:
    from pytest_rootless.plugin.container import diff

    before = {"/tmp/a": ["file", 0o644, 1, 10], "/tmp/b": ["dir", 0o755], "/tmp/c": ["link", "x"]}
    now = {"/tmp/a": ["file", 0o644, 2, 11], "/tmp/c": ["link", "x"], "/tmp/d": ["dir", 0o700]}
    assert diff(before, now) == {"/tmp/a": "modified", "/tmp/b": "deleted", "/tmp/d": "added"}


# --- decoding work is bounded ---------------------------------------------------------------

#: Python hashes an int modulo this prime: ints that differ by a multiple share one hash.
HASH_MODULUS = 2**61 - 1


def _colliding(n: int) -> list[object]:
    return [{"$t": "int", "v": format(1 + k * HASH_MODULUS, "x")} for k in range(n)]


@pytest.mark.parametrize("tag", ["set", "frozenset"])
def test_a_set_of_many_colliding_hashes_is_refused_at_once(tag: str) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="elements with one hash"):
        decoding.decode_value({"$t": tag, "v": _colliding(30_000)})
    assert time.monotonic() - started < 1


def test_a_dict_of_many_colliding_keys_is_refused_at_once() -> None:
    pairs = [[key, 0] for key in _colliding(30_000)]
    started = time.monotonic()
    with pytest.raises(ValueError, match="keys with one hash"):
        decoding.decode_value({"$t": "dict", "v": pairs})
    assert time.monotonic() - started < 1


def test_a_few_colliding_hashes_are_data() -> None:
    n = decoding.MAX_SHARED_HASH
    expected = {1 + k * HASH_MODULUS for k in range(n)}
    assert decoding.decode_value({"$t": "set", "v": _colliding(n)}) == expected
    assert decoding.decode_value({"$t": "set", "v": [-1, -2]}) == {-1, -2}  # one hash


def test_decoding_stops_at_its_deadline() -> None:
    data = [[i] for i in range(200_000)]
    with pytest.raises(decoding.DecodeTimeout):
        decoding.decode_value(data, deadline=time.monotonic() - 1)
    assert decoding.decode_value(data, deadline=time.monotonic() + 60) == data


def test_large_results_decode_within_their_bounds() -> None:
    assert decoding.decode_value(list(range(100_000))) == list(range(100_000))
    strings = [f"s{i}" for i in range(10_000)]
    assert decoding.decode_value({"$t": "set", "v": strings}) == set(strings)


def test_more_values_than_the_bound_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "MAX_ENTRIES", 1000)
    with pytest.raises(ValueError, match="more than 1000 values"):
        decoding.decode_value([[0] * 600, [0] * 600])
