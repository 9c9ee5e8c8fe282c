"""Exceptions that come back from a container, as data (the value codec is :mod:`.values`).

An exception raised by a function run in a container is encoded there
(:func:`encode_exception`) and rebuilt on the host (:func:`decode_exception`) as the same
builtin type when it is one, else as :class:`RemoteError`; nothing is imported or looked
up by a name that came from the container except the builtin exception classes.
"""

from __future__ import annotations

import builtins
import traceback
from typing import Final, TypeVar

from .decoding import decode_root
from .values import encode_root
from .values import type_name as name_of

__all__ = ["MAX_GROUP_DEPTH", "RemoteError", "decode_exception", "encode_exception"]

_T = TypeVar("_T")

#: How many exception groups may nest in an exception.
MAX_GROUP_DEPTH: Final = 20


_TRACEBACK_NOTE: Final = "Traceback in the container:\n"


#: Raised in a container, these are rebuilt as RemoteError: the host never gets a
#: KeyboardInterrupt or SystemExit out of a container (it would stop the session).
_CONTROL_FLOW: Final = (KeyboardInterrupt, SystemExit, GeneratorExit)


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
        "type": name_of(cls),
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
        return [encode_root(arg, f"args[{i}]") for i, arg in enumerate(args)]
    except Exception:  # EncodeError, or anything a broken exception does
        return None


def _encode_loosely(value: object) -> object:
    try:
        return encode_root(value, "value")
    except Exception:
        return _safe_str(value)


def _safe_str(obj: object) -> str:
    try:
        return str(obj)
    except Exception as exc:
        return f"<str() of a {name_of(type(obj))} failed with {name_of(type(exc))}>"


def _format_traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception as error:
        return (
            f"{name_of(type(exc))}: {_safe_str(exc)}\n"
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
        raise ValueError(f"an encoded exception is not an object but {name_of(type(data))}")
    assert isinstance(data, dict)
    type_name = _field(data, "type", str)
    module = _field(data, "module", str)
    name = _field(data, "name", str)
    message = _field(data, "message", str)
    remote_traceback = _optional(data, "traceback", str) or ""
    raw_args = _optional(data, "args", list)
    args = None
    if raw_args is not None:
        args = tuple(decode_root(arg, f"args[{i}]") for i, arg in enumerate(raw_args))
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
    filename = decode_root(data.get("filename"), "filename")
    filename2 = decode_root(data.get("filename2"), "filename2")
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
