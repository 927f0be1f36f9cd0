"""Outgoing messages: CloudEvents envelopes bound for the outbox."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from campaign_worker import topics
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


def dumps(obj: Any) -> bytes:
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
    extra: dict[str, Any] | None = None,
) -> OutboxMessage:
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
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
    if extra:
        envelope.update(extra)
    if key is None and subject is not None:
        key = subject.encode()
    return OutboxMessage(topic=topic, key=key, value=dumps(envelope))


def dead_letter(
    *,
    physical_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    headers: tuple[tuple[str, bytes], ...],
    code: str,
    message: str,
    now: datetime,
) -> OutboxMessage:
    """The DLQ record: original bytes (base64), the error, the source coordinates and the
    original headers, keyed by the original key. The original headers also ride along as
    Kafka headers so tools that only look at headers still see them."""
    data = {
        "original": base64.b64encode(value).decode(),
        "error": {"code": code, "message": message},
        "source": {"topic": physical_topic, "partition": partition, "offset": offset},
        "headers": [{"key": k, "value": base64.b64encode(v).decode()} for k, v in headers],
        "key": base64.b64encode(key).decode() if key is not None else None,
    }
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": "dlq.dead_lettered",
        "time": now,
        "datacontenttype": "application/json",
        "data": data,
    }
    out_headers = (
        ("content-type", CONTENT_TYPE.encode()),
        *((f"dlq-original-{k}", v) for k, v in headers),
    )
    return OutboxMessage(topic=topics.DLQ, key=key, value=dumps(envelope), headers=out_headers)
