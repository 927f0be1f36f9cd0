"""A hand-written in-memory unit of work (no mocks): commits copy staged state into the store."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self
from uuid import UUID

from campaign_worker.domain.model import AdProduct, Campaign, CategoryState, Creative, Status
from campaign_worker.domain.serving import Hold
from campaign_worker.domain.settlement import Account, Statement
from campaign_worker.entrypoints.messages import INBOUND_TYPES
from campaign_worker.entrypoints.translate import translate
from campaign_worker.service.envelope import OutboxMessage
from campaign_worker.service.inbound import Item, Source
from campaign_worker.service.unit_of_work import (
    CampaignExtras,
    DeadLetterEntry,
    DueSettlement,
    DueTrigger,
    HistoryEntry,
    InboxEntry,
    LedgerRow,
    NotificationRequest,
)


def translated(event: dict[str, Any], offset: int = 0, key: bytes = b"k") -> Item:
    """`event` as the processor receives it: a record on its type's topic, translated."""
    topic = INBOUND_TYPES[event["type"]].topic
    return translate(Source(topic, 0, offset, key, json.dumps(event).encode()), max_bytes=100_000)


@dataclass
class Store:
    inbox: dict[str, InboxEntry] = field(default_factory=dict)
    dead_letters: dict[tuple[str, int, int], DeadLetterEntry] = field(default_factory=dict)
    campaigns: dict[UUID, Campaign] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    products: dict[str, AdProduct] = field(default_factory=dict)
    outbox: list[OutboxMessage] = field(default_factory=list)
    creatives: dict[tuple[UUID, str], Creative] = field(default_factory=dict)
    holds: dict[UUID, tuple[frozenset[Hold], str | None]] = field(default_factory=dict)
    categories: dict[str, CategoryState] = field(default_factory=dict)
    accounts: dict[UUID, Account] = field(default_factory=dict)
    ledger: list[LedgerRow] = field(default_factory=list)
    statements: dict[UUID, Statement] = field(default_factory=dict)
    fail_next: list[BaseException] = field(default_factory=list)
    product_locks: list[str] = field(default_factory=list)  # lock_campaigns_of_product calls
    notifications: dict[tuple[str, str, str], NotificationRequest] = field(default_factory=dict)
    commits: int = 0


class FakeUnitOfWork:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.staged = Store()

    async def __aenter__(self) -> Self:
        self.staged = Store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.staged = Store()

    async def commit(self) -> None:
        if self.store.fail_next:
            raise self.store.fail_next.pop(0)
        s, t = self.store, self.staged
        s.inbox.update(t.inbox)
        s.dead_letters.update(t.dead_letters)
        s.campaigns.update(t.campaigns)
        s.history.extend(t.history)
        s.products.update(t.products)
        s.outbox.extend(t.outbox)
        s.creatives.update(t.creatives)
        s.holds.update(t.holds)
        s.categories.update(t.categories)
        s.accounts.update(t.accounts)
        s.ledger.extend(t.ledger)
        for cid, st in t.statements.items():
            if cid in s.statements:
                raise AssertionError(f"second statement for {cid}")  # the unique constraint
            s.statements[cid] = st
        s.notifications.update(t.notifications)
        s.commits += 1

    async def claim_inbox(self, entries: Sequence[InboxEntry]) -> set[str]:
        fresh = set()
        for e in entries:
            if e.message_id not in self.store.inbox and e.message_id not in self.staged.inbox:
                self.staged.inbox[e.message_id] = e
                fresh.add(e.message_id)
        return fresh

    async def add_dead_letters(self, entries: Sequence[DeadLetterEntry]) -> list[DeadLetterEntry]:
        new = []
        for e in entries:
            k = (e.source.topic, e.source.partition, e.source.offset)
            if k not in self.store.dead_letters and k not in self.staged.dead_letters:
                self.staged.dead_letters[k] = e
                new.append(e)
        return new

    # Reads see this unit of work's own writes, as a transaction does.
    def _campaigns(self) -> dict[UUID, Campaign]:
        return {**self.store.campaigns, **self.staged.campaigns}

    async def lock_campaigns(self, ids: Iterable[UUID]) -> dict[UUID, Campaign]:
        campaigns = self._campaigns()
        return {i: campaigns[i] for i in set(ids) if i in campaigns}

    async def save_campaigns(self, campaigns: Sequence[Campaign], now: datetime) -> None:
        self.staged.campaigns.update({c.id: c for c in campaigns})

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        self.staged.history.extend(entries)

    async def get_products(self, ids: Iterable[str]) -> dict[str, AdProduct]:
        products = {**self.store.products, **self.staged.products}
        return {i: products[i] for i in set(ids) if i in products}

    async def save_products(self, products: Sequence[AdProduct], now: datetime) -> None:
        self.staged.products.update({p.id: p for p in products})

    async def load_extras(self, campaign_ids: Iterable[UUID]) -> CampaignExtras:
        ids = set(campaign_ids)
        extras = CampaignExtras(
            creatives={cid: {} for cid in ids},
            holds=dict.fromkeys(ids, frozenset()),
            suspension_reasons=dict.fromkeys(ids),
        )
        for (cid, crid), creative in {**self.store.creatives, **self.staged.creatives}.items():
            if cid in ids:
                extras.creatives[cid][crid] = creative
        for cid, (held, reason) in {**self.store.holds, **self.staged.holds}.items():
            if cid in ids:
                extras.holds[cid], extras.suspension_reasons[cid] = held, reason
        for cid, account in {**self.store.accounts, **self.staged.accounts}.items():
            if cid in ids:
                extras.accounts[cid] = account
        return extras

    async def save_accounts(self, accounts: Sequence[Account], now: datetime) -> None:
        self.staged.accounts.update({a.campaign_id: a for a in accounts})

    async def add_ledger_rows(self, rows: Sequence[LedgerRow]) -> None:
        self.staged.ledger.extend(rows)

    async def add_statements(self, statements: Sequence[Statement], now: datetime) -> None:
        for st in statements:  # the unique key on campaign_id, checked at once like SQL's
            if st.campaign_id in self.store.statements or st.campaign_id in self.staged.statements:
                raise AssertionError(f"second statement for {st.campaign_id}")
            self.staged.statements[st.campaign_id] = st

    async def status_history(
        self, campaign_ids: Iterable[UUID]
    ) -> dict[UUID, list[tuple[datetime, Status]]]:
        ids = set(campaign_ids)
        result: dict[UUID, list[tuple[datetime, Status]]] = {cid: [] for cid in ids}
        history = sorted(
            (h for h in (*self.store.history, *self.staged.history) if h.campaign_id in ids),
            key=lambda h: h.version,
        )
        for h in history:
            if h.to_status is not None:
                result[h.campaign_id].append((h.occurred_at, Status(h.to_status)))
        return result

    async def lock_campaigns_of_product(self, product_id: str) -> dict[UUID, Campaign]:
        self.store.product_locks.append(product_id)
        return {
            c.id: c
            for c in self._campaigns().values()
            if c.ad_product_id == product_id and c.status not in (Status.CLOSED, Status.CANCELLED)
        }

    async def save_creatives(self, creatives: Sequence[Creative], now: datetime) -> None:
        self.staged.creatives.update({(c.campaign_id, c.id): c for c in creatives})

    async def save_holds(
        self, holds: Mapping[UUID, tuple[frozenset[Hold], str | None]], now: datetime
    ) -> None:
        self.staged.holds.update(holds)

    async def get_categories(self, ids: Iterable[str]) -> dict[str, CategoryState]:
        categories = {**self.store.categories, **self.staged.categories}
        return {i: categories[i] for i in set(ids) if i in categories}

    async def save_categories(self, states: Mapping[str, CategoryState], now: datetime) -> None:
        self.staged.categories.update(states)

    async def claim_due(self, now: datetime, limit: int) -> list[DueTrigger]:
        # earliest due first, then by id; a BOOKED campaign whose start and end both passed
        # is due (to start, and so to close at once) at the earlier of the two
        due = []
        for c in self._campaigns().values():
            if c.status is Status.BOOKED and c.start_at <= now:
                due.append((min(c.start_at, c.end_at), c.id, DueTrigger(c.id, "start", c.start_at)))
            elif (
                c.status in (Status.SUBMITTED, Status.BOOKED, Status.LIVE, Status.PAUSED)
                and c.end_at <= now
            ):
                due.append((c.end_at, c.id, DueTrigger(c.id, "end", c.end_at)))
        return [d for _, _, d in sorted(due, key=lambda d: (d[0], d[1]))[:limit]]

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        self.staged.outbox.extend(messages)

    async def add_notifications(
        self, requests: Sequence[NotificationRequest]
    ) -> list[NotificationRequest]:
        new = []
        for n in requests:
            k = (n.cause_id, n.recipient, n.kind)
            if k not in self.store.notifications and k not in self.staged.notifications:
                self.staged.notifications[k] = n
                new.append(n)
        return new

    async def claim_settlements(self, now: datetime, limit: int) -> list[DueSettlement]:
        due = [
            DueSettlement(cid, a.settle_at)
            for cid, a in self.store.accounts.items()
            if a.settlement_pending and a.settle_at is not None and a.settle_at <= now
        ]
        return sorted(due, key=lambda d: (d.due_at, d.campaign_id))[:limit]

    async def relevance_peers(
        self, product_ids: Iterable[str], min_impressions: int
    ) -> dict[str, dict[UUID, tuple[int, int]]]:
        wanted = set(product_ids)
        result: dict[str, dict[UUID, tuple[int, int]]] = {p: {} for p in wanted}
        for cid, a in self.store.accounts.items():
            campaign = self.store.campaigns.get(cid)
            if campaign is None or campaign.ad_product_id not in wanted:
                continue
            if a.live_impressions >= min_impressions:
                result[campaign.ad_product_id][cid] = (a.live_impressions, a.live_clicks)
        return result
