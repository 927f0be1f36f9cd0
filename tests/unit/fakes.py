"""A hand-written in-memory unit of work (no mocks): commits copy staged state into the store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Self
from uuid import UUID

from campaign_worker.domain.model import AdProduct, Campaign
from campaign_worker.service.outgoing import OutboxMessage
from campaign_worker.service.unit_of_work import DeadLetterEntry, HistoryEntry, InboxEntry


@dataclass
class Store:
    inbox: dict[str, InboxEntry] = field(default_factory=dict)
    dead_letters: dict[tuple[str, int, int], DeadLetterEntry] = field(default_factory=dict)
    campaigns: dict[UUID, Campaign] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    products: dict[str, AdProduct] = field(default_factory=dict)
    outbox: list[OutboxMessage] = field(default_factory=list)
    fail_next: list[BaseException] = field(default_factory=list)
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

    async def lock_campaigns(self, ids: Iterable[UUID]) -> dict[UUID, Campaign]:
        return {i: self.store.campaigns[i] for i in set(ids) if i in self.store.campaigns}

    async def save_campaigns(self, campaigns: Sequence[Campaign], now: datetime) -> None:
        self.staged.campaigns.update({c.id: c for c in campaigns})

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        self.staged.history.extend(entries)

    async def get_products(self, ids: Iterable[str]) -> dict[str, AdProduct]:
        return {i: self.store.products[i] for i in set(ids) if i in self.store.products}

    async def save_products(self, products: Sequence[AdProduct], now: datetime) -> None:
        self.staged.products.update({p.id: p for p in products})

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        self.staged.outbox.extend(messages)
