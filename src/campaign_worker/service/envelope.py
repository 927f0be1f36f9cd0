"""The CloudEvents envelope of every outgoing message, and the outbox row that carries it.

The payloads themselves are typed, one class per outgoing type, in `outbound.py`; this module
only wraps a payload's wire form in the envelope and serialises it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import orjson

from campaign_worker.domain.money import Money

SOURCE = "/campaign-worker"
CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True)
class OutboxMessage:
    topic: str  # contract name
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = (("content-type", CONTENT_TYPE.encode()),)


_PLAIN = frozenset({str, int, float, bool})


def to_wire(value: Any) -> Any:
    """JSON form of domain values: money as decimal strings, instants in RFC 3339 UTC."""
    if value is None or type(value) in _PLAIN:  # the common case first: it is a hot path
        return value
    if isinstance(value, Money):
        return value.to_wire()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_wire(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: to_wire(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


# orjson writes str, int, float, bool, None, lists, dicts, UUIDs, enums and datetimes itself
# (UTC as "Z", like `to_wire`); money, decimals and other dataclasses go through `to_wire`.
_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_PASSTHROUGH_DATACLASS


def _default(value: Any) -> Any:
    wire = to_wire(value)
    if wire is value:
        raise TypeError(f"{type(value).__name__} has no wire form")
    return wire


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON of `obj` in its wire form (the payloads of `outbound.py` are in
    wire form already, so the common case walks nothing twice)."""
    try:
        return orjson.dumps(obj, default=_default, option=_ORJSON_OPTIONS)
    except TypeError:  # e.g. an integer beyond 64 bits, which orjson refuses
        return json.dumps(to_wire(obj), separators=(",", ":"), ensure_ascii=False).encode()


def event(
    *,
    topic: str,
    type: str,
    subject: str | None,
    data: dict[str, Any],
    now: datetime,
    causation_id: str | None,
    correlation_id: str | None,
    key: bytes | None = None,
    id: str | None = None,
    headers: tuple[tuple[str, bytes], ...] | None = None,
) -> OutboxMessage:
    """One CloudEvent as an outbox row, keyed by its subject unless `key` is given; `id` is
    a fresh UUID unless the caller derives one (e.g. a notification's own id)."""
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": id if id is not None else str(uuid.uuid4()),
        "source": SOURCE,
        "type": type,
        "time": now,
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject is not None:
        envelope["subject"] = subject
    if causation_id is not None:
        envelope["causationid"] = causation_id
    if correlation_id is not None:
        envelope["correlationid"] = correlation_id
    if key is None and subject is not None:
        key = subject.encode()
    if headers is None:
        return OutboxMessage(topic=topic, key=key, value=dumps(envelope))
    return OutboxMessage(topic=topic, key=key, value=dumps(envelope), headers=headers)
