"""The SQL unit of work: one transaction on one connection, batch statements throughout so
that a batch of messages costs a handful of round trips, not a handful per message."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Self
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from campaign_worker.adapters.db.tables import (
    ad_products,
    campaign_history,
    campaigns,
    dead_letters,
    inbox,
    outbox,
)
from campaign_worker.domain.model import (
    AdProduct,
    BillingType,
    Campaign,
    Contact,
    FrequencyCap,
    Status,
    Targeting,
)
from campaign_worker.domain.money import Money
from campaign_worker.service.outgoing import OutboxMessage
from campaign_worker.service.unit_of_work import DeadLetterEntry, HistoryEntry, InboxEntry


def encode_headers(headers: Iterable[tuple[str, bytes]]) -> list[list[str]]:
    return [[k, base64.b64encode(v).decode()] for k, v in headers]


def decode_headers(stored: Iterable[Sequence[str]]) -> list[tuple[str, bytes]]:
    return [(k, base64.b64decode(v)) for k, v in stored]


def campaign_to_row(c: Campaign, now: datetime) -> dict[str, Any]:
    return {
        "id": c.id,
        "advertiser_id": c.advertiser_id,
        "title": c.title,
        "ad_product_id": c.ad_product_id,
        "budget_amount": c.budget.amount,
        "currency": c.budget.currency,
        "billing_type": c.billing_type.value,
        "start_at": c.start_at,
        "end_at": c.end_at,
        "targeting": {
            "categories": list(c.targeting.categories),
            "groups": list(c.targeting.groups),
        },
        "frequency_cap": (
            {"impressions": c.frequency_cap.impressions, "per": c.frequency_cap.per}
            if c.frequency_cap
            else None
        ),
        "contact_name": c.contact.name,
        "contact_email": c.contact.email,
        "timezone": c.timezone,
        "status": c.status.value,
        "paused_from": c.paused_from.value if c.paused_from else None,
        "version": c.version,
        "rejection_reason": c.rejection_reason,
        "cancel_reason": c.cancel_reason,
        "penalty_amount": c.penalty.amount if c.penalty else None,
        "updated_at": now,
    }


def _money(amount: Decimal, currency: str) -> Money:
    return Money(amount=amount, currency=currency).quantize()


def row_to_campaign(r: Any) -> Campaign:
    fc = r.frequency_cap
    return Campaign(
        id=r.id,
        advertiser_id=r.advertiser_id,
        title=r.title,
        ad_product_id=r.ad_product_id,
        budget=_money(r.budget_amount, r.currency),
        billing_type=BillingType(r.billing_type),
        start_at=r.start_at,
        end_at=r.end_at,
        targeting=Targeting(
            categories=tuple(r.targeting.get("categories", ())),
            groups=tuple(r.targeting.get("groups", ())),
        ),
        frequency_cap=FrequencyCap(impressions=fc["impressions"], per=fc["per"]) if fc else None,
        contact=Contact(name=r.contact_name, email=r.contact_email),
        timezone=r.timezone,
        status=Status(r.status),
        paused_from=Status(r.paused_from) if r.paused_from else None,
        version=r.version,
        rejection_reason=r.rejection_reason,
        cancel_reason=r.cancel_reason,
        penalty=_money(r.penalty_amount, r.currency) if r.penalty_amount is not None else None,
    )


def row_to_product(r: Any) -> AdProduct:
    return AdProduct(
        id=r.id,
        name=r.name,
        unit_ids=tuple(r.unit_ids),
        unit_set_valid=r.unit_set_valid,
        buyable=r.buyable,
        deleted=r.deleted,
    )


class SqlUnitOfWork:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    @property
    def conn(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._conn

    async def __aenter__(self) -> Self:
        self._conn = await self._engine.connect()
        await self._conn.begin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction():
                await conn.rollback()
        finally:
            await conn.close()

    async def commit(self) -> None:
        await self.conn.commit()

    async def claim_inbox(self, entries: Sequence[InboxEntry]) -> set[str]:
        if not entries:
            return set()
        rows = [
            {
                "message_id": e.message_id,
                "type": e.type,
                "topic": e.source.topic,
                "partition": e.source.partition,
                "offset": e.source.offset,
            }
            for e in entries
        ]
        stmt = (
            insert(inbox)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[inbox.c.message_id])
            .returning(inbox.c.message_id)
        )
        result = await self.conn.execute(stmt)
        return {r[0] for r in result}

    async def add_dead_letters(self, entries: Sequence[DeadLetterEntry]) -> list[DeadLetterEntry]:
        if not entries:
            return []
        rows = [
            {
                "topic": e.source.topic,
                "partition": e.source.partition,
                "offset": e.source.offset,
                "key": e.source.key,
                "value": e.source.value,
                "headers": encode_headers(e.source.headers),
                "error_code": e.code,
                "error_message": e.message,
                "message_id": e.message_id,
                "message_type": e.type,
            }
            for e in entries
        ]
        stmt = (
            insert(dead_letters)
            .values(rows)
            .on_conflict_do_nothing(constraint="uq_dead_letters_source")
            .returning(dead_letters.c.topic, dead_letters.c.partition, dead_letters.c.offset)
        )
        new = {tuple(r) for r in await self.conn.execute(stmt)}
        return [e for e in entries if (e.source.topic, e.source.partition, e.source.offset) in new]

    async def lock_campaigns(self, ids: Iterable[UUID]) -> dict[UUID, Campaign]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        stmt = (
            select(campaigns)
            .where(campaigns.c.id.in_(wanted))
            .order_by(campaigns.c.id)
            .with_for_update()
        )
        result = await self.conn.execute(stmt)
        return {r.id: row_to_campaign(r) for r in result}

    async def save_campaigns(self, items: Sequence[Campaign], now: datetime) -> None:
        if not items:
            return
        rows = [campaign_to_row(c, now) for c in items]
        stmt = insert(campaigns).values(rows)
        updatable = {k: stmt.excluded[k] for k in rows[0] if k != "id"}
        await self.conn.execute(
            stmt.on_conflict_do_update(index_elements=[campaigns.c.id], set_=updatable)
        )

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        await self.conn.execute(
            insert(campaign_history),
            [
                {
                    "campaign_id": e.campaign_id,
                    "version": e.version,
                    "kind": e.kind,
                    "from_status": e.from_status,
                    "to_status": e.to_status,
                    "trigger": e.trigger,
                    "details": dict(e.details),
                    "actor_role": e.actor_role,
                    "actor_id": e.actor_id,
                    "message_id": e.message_id,
                    "message_type": e.message_type,
                    "correlation_id": e.correlation_id,
                    "occurred_at": e.occurred_at,
                }
                for e in entries
            ],
        )

    async def get_products(self, ids: Iterable[str]) -> dict[str, AdProduct]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        result = await self.conn.execute(select(ad_products).where(ad_products.c.id.in_(wanted)))
        return {r.id: row_to_product(r) for r in result}

    async def save_products(self, products: Sequence[AdProduct], now: datetime) -> None:
        if not products:
            return
        rows = [
            {
                "id": p.id,
                "name": p.name,
                "unit_ids": list(p.unit_ids),
                "unit_set_valid": p.unit_set_valid,
                "buyable": p.buyable,
                "deleted": p.deleted,
                "updated_at": now,
            }
            for p in products
        ]
        stmt = insert(ad_products).values(rows)
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[ad_products.c.id],
                set_={k: stmt.excluded[k] for k in rows[0] if k != "id"},
            )
        )

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        if not messages:
            return
        await self.conn.execute(
            insert(outbox),
            [
                {
                    "topic": m.topic,
                    "key": m.key,
                    "value": m.value,
                    "headers": encode_headers(m.headers),
                }
                for m in messages
            ],
        )


__all__ = ["SqlUnitOfWork", "decode_headers", "row_to_campaign"]
