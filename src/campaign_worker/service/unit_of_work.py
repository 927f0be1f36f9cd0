"""The unit of work: one database transaction holding the inbox row, the new state, the
history and every outgoing message. Its SQL form lives in adapters/db/; tests use a fake."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Self
from uuid import UUID

from campaign_worker.domain.model import AdProduct, Campaign
from campaign_worker.service.inbound import Source
from campaign_worker.service.outgoing import OutboxMessage


@dataclass(frozen=True)
class InboxEntry:
    message_id: str
    type: str
    source: Source


@dataclass(frozen=True)
class DeadLetterEntry:
    source: Source
    physical_topic: str
    code: str
    message: str
    message_id: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    campaign_id: UUID
    version: int
    kind: str  # created, status_changed, updated
    actor_role: str
    actor_id: str | None
    message_id: str
    message_type: str
    correlation_id: str | None
    occurred_at: datetime
    from_status: str | None = None
    to_status: str | None = None
    trigger: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class UnitOfWork(Protocol):
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def commit(self) -> None: ...

    async def claim_inbox(self, entries: Sequence[InboxEntry]) -> set[str]:
        """Record these message ids as processed; return those not seen before."""

    async def add_dead_letters(self, entries: Sequence[DeadLetterEntry]) -> list[DeadLetterEntry]:
        """Store dead letters; return those not stored before (by source coordinates)."""

    async def lock_campaigns(self, ids: Iterable[UUID]) -> dict[UUID, Campaign]:
        """Load and lock (for update, in id order) the campaigns that exist."""

    async def save_campaigns(self, campaigns: Sequence[Campaign], now: datetime) -> None: ...
    async def add_history(self, entries: Sequence[HistoryEntry]) -> None: ...
    async def get_products(self, ids: Iterable[str]) -> dict[str, AdProduct]: ...
    async def save_products(self, products: Sequence[AdProduct], now: datetime) -> None: ...
    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...
