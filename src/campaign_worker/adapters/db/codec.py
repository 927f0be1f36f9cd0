"""JSON documents for frozen domain dataclasses (the money account is stored as one).

`dump` writes plain JSON (decimals and instants as strings); `load` rebuilds the dataclass
from its type hints, so the stored form follows the domain types without a second schema.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any, TypeVar
from uuid import UUID

T = TypeVar("T")


def dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | frozenset | set):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): dump(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def load(tp: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"cannot load an ambiguous union {tp}")
        return load(options[0], data)
    if origin in (tuple, list, frozenset, set):
        args = typing.get_args(tp)
        item = args[0] if args else Any
        seq = [load(item, v) for v in data]
        return origin(seq) if origin is not list else seq
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        return {load(key_tp, k): load(value_tp, v) for k, v in data.items()}
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            hints = _hints(tp)
            return tp(
                **{
                    f.name: load(hints[f.name], data[f.name])
                    for f in dataclasses.fields(tp)
                    if f.init and f.name in data
                }
            )
        if issubclass(tp, Enum):
            return tp(data)
        if tp in (Decimal, UUID):
            return tp(data)
        if tp is datetime:
            return datetime.fromisoformat(data)
    return data


def load_as(cls: type[T], data: Any) -> T:
    return typing.cast(T, load(cls, data))
