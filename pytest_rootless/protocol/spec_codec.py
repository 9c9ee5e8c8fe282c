"""Frozen dataclasses as JSON-ready data and back, for a container's spec sent to a
prepared container's zygote (a request to it is JSON, never a pickle).

Only the classes a codec is made with can be rebuilt: a class is named in the data
(``{"@": "Options", ...}``) and looked up in that registry, never imported. Tuples come
back as tuples, ``bytes`` and ``frozenset`` are tagged (``{"@bytes": "hex"}``,
``{"@frozenset": [...]}``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

_T = TypeVar("_T")


class DataclassCodec:
    """Turns instances of ``types`` (and tuples, frozensets, bytes and plain JSON values
    inside them) into data and back. Instances of ``once`` (immutable and long-lived,
    such as a session's mount plans) are turned into data once and the data is reused:
    each is kept alive with its data, so its id is not reused."""

    def __init__(self, types: Iterable[type], once: tuple[type, ...] = ()) -> None:
        self.types: dict[str, type] = {cls.__name__: cls for cls in types}
        self.once = once
        self._known: dict[int, tuple[object, object]] = {}

    def to_data(self, value: object) -> object:
        """``value`` as JSON-ready data."""
        if self.once and isinstance(value, self.once):
            known = self._known.get(id(value))
            if known is None:
                known = self._known[id(value)] = (value, self._dataclass_data(value))
            return known[1]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._dataclass_data(value)
        if isinstance(value, bytes):
            return {"@bytes": value.hex()}
        if isinstance(value, frozenset):
            return {"@frozenset": sorted(value)}
        if isinstance(value, tuple | list):
            return [self.to_data(v) for v in value]
        if value is None or isinstance(value, str | int | float):
            return value
        raise TypeError(f"{type(value).__name__} cannot be sent to a prepared container")

    def _dataclass_data(self, value: Any) -> object:
        name = type(value).__name__
        if self.types.get(name) is not type(value):
            raise TypeError(f"{name} cannot be sent to a prepared container")
        fields = {
            f.name: self.to_data(getattr(value, f.name))
            for f in dataclasses.fields(typing.cast(Any, value))
        }
        return {"@": name, **fields}

    def from_data(self, data: object, cls: type[_T]) -> _T:
        """The inverse of :meth:`to_data`, checked to be a ``cls``."""
        value = self._from_data(data)
        if not isinstance(value, cls):
            raise TypeError(f"not a {cls.__name__}")
        return value

    def _from_data(self, data: object) -> object:
        if isinstance(data, list):
            return tuple(self._from_data(v) for v in data)
        if not isinstance(data, dict):
            return data
        if "@bytes" in data:
            return bytes.fromhex(data["@bytes"])
        if "@frozenset" in data:
            return frozenset(data["@frozenset"])
        cls = self.types[data["@"]]
        return cls(**{k: self._from_data(v) for k, v in data.items() if k != "@"})
