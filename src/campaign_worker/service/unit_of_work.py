"""The unit of work: one database transaction holding the inbox row, the new state, the
history and every outgoing message. Its SQL form lives in adapters/db/; tests use a fake."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Self
from uuid import UUID

from campaign_worker.domain.ledger import LedgerEntry
from campaign_worker.domain.model import AdProduct, Campaign, CategoryState, Creative, Status
from campaign_worker.domain.serving import Hold
from campaign_worker.domain.settlement import Account, Statement
from campaign_worker.service.envelope import OutboxMessage
from campaign_worker.service.inbound import Source


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


@dataclass(frozen=True)
class DueTrigger:
    campaign_id: UUID
    kind: str  # "start" or "end"
    due_at: datetime


@dataclass(frozen=True)
class NotificationRequest:
    """One notification to send (spec §10): a pending row and a `notification.requested`
    event, both written in the transaction of the change that caused it. `id` and
    `message_id` are derived from (cause_id, recipient, kind), the row's unique key."""

    id: UUID
    cause_id: str  # id of the message that caused it
    kind: str
    recipient: str
    subject: str
    campaign_id: UUID
    creative_id: str | None
    template_data: Mapping[str, Any]
    message_id: str  # RFC 5322 Message-ID, "<...@...>"
    correlation_id: str | None
    requested_at: datetime


@dataclass(frozen=True)
class CampaignExtras:
    """What else a campaign's rules consult: its creatives (tombstones included) and its
    stored holds (with the suspension reason)."""

    creatives: dict[UUID, dict[str, Creative]]
    holds: dict[UUID, frozenset[Hold]]
    suspension_reasons: dict[UUID, str | None]
    accounts: dict[UUID, Account] = field(default_factory=dict)  # only those with money moved


@dataclass(frozen=True)
class LedgerRow:
    campaign_id: UUID
    entry: LedgerEntry
    message_id: str


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

    async def load_extras(self, campaign_ids: Iterable[UUID]) -> CampaignExtras: ...

    async def lock_campaigns_of_product(self, product_id: str) -> dict[UUID, Campaign]:
        """Lock the open (not CLOSED/CANCELLED) campaigns of one ad product."""

    async def save_creatives(self, creatives: Sequence[Creative], now: datetime) -> None: ...

    async def save_holds(
        self, holds: Mapping[UUID, tuple[frozenset[Hold], str | None]], now: datetime
    ) -> None: ...

    async def get_categories(self, ids: Iterable[str]) -> dict[str, CategoryState]: ...

    async def save_accounts(self, accounts: Sequence[Account], now: datetime) -> None: ...

    async def add_ledger_rows(self, rows: Sequence[LedgerRow]) -> None: ...

    async def add_statements(self, statements: Sequence[Statement], now: datetime) -> None: ...

    async def status_history(
        self, campaign_ids: Iterable[UUID]
    ) -> dict[UUID, list[tuple[datetime, Status]]]:
        """(when, status reached) per campaign, oldest first: the LIVE intervals for billing."""

    async def save_categories(self, states: Mapping[str, CategoryState], now: datetime) -> None: ...

    async def claim_due(self, now: datetime, limit: int) -> list[DueTrigger]:
        """Lock (skipping rows other transactions hold) up to `limit` campaigns whose start
        (BOOKED) or end (SUBMITTED, BOOKED, LIVE, PAUSED) is at or before `now`, earliest
        first."""

    async def add_notifications(
        self, requests: Sequence[NotificationRequest]
    ) -> list[NotificationRequest]:
        """Store notification requests as pending rows; return those not stored before
        (unique per cause, recipient and kind)."""

    async def claim_settlements(self, now: datetime, limit: int) -> list[DueSettlement]:
        """Lock (skipping rows other transactions hold) up to `limit` closed campaigns whose
        statement is pending and due (`Account.settle_at` at or before `now`), earliest first."""

    async def relevance_peers(
        self, product_ids: Iterable[str], min_impressions: int
    ) -> dict[str, dict[UUID, tuple[int, int]]]:
        """Per ad product, the campaigns with at least `min_impressions` LIVE impressions:
        campaign id -> (LIVE impressions, LIVE clicks). One query for all the products."""


@dataclass(frozen=True)
class DueSettlement:
    """A closed campaign whose settlement grace ran out (spec §6)."""

    campaign_id: UUID
    due_at: datetime


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...
