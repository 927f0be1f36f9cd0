"""The SQL unit of work: one transaction on one connection, batch statements throughout so
that a batch of messages costs a handful of round trips, not a handful per message."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Self
from uuid import UUID

from sqlalchemy import Table, case, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from campaign_worker.adapters.db.codec import dump, load_as
from campaign_worker.adapters.db.tables import (
    ad_products,
    campaign_accounts,
    campaign_history,
    campaign_holds,
    campaigns,
    catalog_categories,
    creatives,
    dead_letters,
    inbox,
    ledger_entries,
    notifications,
    outbox,
    statements,
)
from campaign_worker.domain.model import (
    AdProduct,
    BillingType,
    Campaign,
    CategoryState,
    Contact,
    Creative,
    CreativeContent,
    CreativeStatus,
    FrequencyCap,
    Status,
    Targeting,
)
from campaign_worker.domain.money import Money
from campaign_worker.domain.serving import Hold
from campaign_worker.domain.settlement import Account, Statement
from campaign_worker.service.envelope import OutboxMessage
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

END_DUE_STATUSES = (Status.BOOKED.value, Status.LIVE.value, Status.PAUSED.value)


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


def row_to_creative(r: Any) -> Creative:
    return Creative(
        id=r.id,
        campaign_id=r.campaign_id,
        name=r.name,
        ad_unit_id=r.ad_unit_id,
        content=CreativeContent(**r.content),
        status=CreativeStatus(r.status),
        rejection_reason=r.rejection_reason,
        deleted=r.deleted,
        deleted_at=r.deleted_at,
        version=r.version,
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

    async def _upsert(
        self, table: Table, rows: list[dict[str, Any]], keys: tuple[str, ...]
    ) -> None:
        """One multi-row INSERT ... ON CONFLICT (keys) DO UPDATE of every other given column."""
        stmt = insert(table).values(rows)
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.c[k] for k in keys],
                set_={k: stmt.excluded[k] for k in rows[0] if k not in keys},
            )
        )

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
        await self._upsert(campaigns, rows, ("id",))

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
        await self._upsert(ad_products, rows, ("id",))

    async def load_extras(self, campaign_ids: Iterable[UUID]) -> CampaignExtras:
        return await self.read_extras(self.conn, campaign_ids)

    @staticmethod
    async def read_extras(conn: AsyncConnection, campaign_ids: Iterable[UUID]) -> CampaignExtras:
        wanted = sorted(set(campaign_ids))
        extras = CampaignExtras(
            creatives={cid: {} for cid in wanted},
            holds=dict.fromkeys(wanted, frozenset()),
            suspension_reasons=dict.fromkeys(wanted),
        )
        if not wanted:
            return extras
        for r in await conn.execute(select(creatives).where(creatives.c.campaign_id.in_(wanted))):
            extras.creatives[r.campaign_id][r.id] = row_to_creative(r)
        for r in await conn.execute(
            select(campaign_holds).where(campaign_holds.c.campaign_id.in_(wanted))
        ):
            extras.holds[r.campaign_id] = frozenset(Hold(h) for h in r.holds)
            extras.suspension_reasons[r.campaign_id] = r.suspension_reason
        for r in await conn.execute(
            select(campaign_accounts).where(campaign_accounts.c.campaign_id.in_(wanted))
        ):
            extras.accounts[r.campaign_id] = load_as(Account, r.account)
        return extras

    async def save_accounts(self, accounts: Sequence[Account], now: datetime) -> None:
        if not accounts:
            return
        rows = [
            {
                "campaign_id": a.campaign_id,
                "account": dump(a),
                "version": a.version,
                "updated_at": now,
                "settle_at": a.settle_at if a.settlement_pending else None,
                "live_impressions": a.live_impressions,
                "live_clicks": a.live_clicks,
            }
            for a in accounts
        ]
        await self._upsert(campaign_accounts, rows, ("campaign_id",))

    async def add_ledger_rows(self, rows: Sequence[LedgerRow]) -> None:
        if not rows:
            return
        await self.conn.execute(
            insert(ledger_entries),
            [
                {
                    "campaign_id": r.campaign_id,
                    "kind": r.entry.kind.value,
                    "amount": r.entry.amount.amount,
                    "currency": r.entry.amount.currency,
                    "ref": r.entry.ref,
                    "billable": r.entry.billable,
                    "reason": r.entry.reason,
                    "at": r.entry.at,
                    "message_id": r.message_id,
                }
                for r in rows
            ],
        )

    async def add_statements(self, items: Sequence[Statement], now: datetime) -> None:
        if not items:
            return
        await self.conn.execute(
            insert(statements),
            [
                {
                    "statement_id": st.statement_id,
                    "campaign_id": st.campaign_id,
                    "document": dump(st),
                    "issued_at": now,
                }
                for st in items
            ],
        )

    async def status_history(
        self, campaign_ids: Iterable[UUID]
    ) -> dict[UUID, list[tuple[datetime, Status]]]:
        wanted = sorted(set(campaign_ids))
        result: dict[UUID, list[tuple[datetime, Status]]] = {cid: [] for cid in wanted}
        if not wanted:
            return result
        h = campaign_history.c
        rows = await self.conn.execute(
            select(h.campaign_id, h.occurred_at, h.to_status)
            .where(h.campaign_id.in_(wanted), h.to_status.is_not(None))
            .order_by(h.campaign_id, h.version)
        )
        for r in rows:
            result[r.campaign_id].append((r.occurred_at, Status(r.to_status)))
        return result

    async def lock_campaigns_of_product(self, product_id: str) -> dict[UUID, Campaign]:
        stmt = (
            select(campaigns)
            .where(
                campaigns.c.ad_product_id == product_id,
                campaigns.c.status.not_in([Status.CLOSED.value, Status.CANCELLED.value]),
            )
            .order_by(campaigns.c.id)
            .with_for_update()
        )
        return {r.id: row_to_campaign(r) for r in await self.conn.execute(stmt)}

    async def save_creatives(self, items: Sequence[Creative], now: datetime) -> None:
        if not items:
            return
        rows = [
            {
                "campaign_id": c.campaign_id,
                "id": c.id,
                "name": c.name,
                "ad_unit_id": c.ad_unit_id,
                "content": {
                    "file_url": c.content.file_url,
                    "destination_url": c.content.destination_url,
                    "text": c.content.text,
                },
                "status": c.status.value,
                "rejection_reason": c.rejection_reason,
                "deleted": c.deleted,
                "deleted_at": c.deleted_at,
                "version": c.version,
                "updated_at": now,
            }
            for c in items
        ]
        await self._upsert(creatives, rows, ("campaign_id", "id"))

    async def save_holds(
        self, holds: Mapping[UUID, tuple[frozenset[Hold], str | None]], now: datetime
    ) -> None:
        if not holds:
            return
        rows = [
            {
                "campaign_id": cid,
                "holds": sorted(h.value for h in held),
                "suspension_reason": reason,
                "updated_at": now,
            }
            for cid, (held, reason) in holds.items()
        ]
        await self._upsert(campaign_holds, rows, ("campaign_id",))

    async def get_categories(self, ids: Iterable[str]) -> dict[str, CategoryState]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        result = await self.conn.execute(
            select(catalog_categories).where(catalog_categories.c.id.in_(wanted))
        )
        return {r.id: CategoryState(r.state) for r in result}

    async def save_categories(self, states: Mapping[str, CategoryState], now: datetime) -> None:
        if not states:
            return
        rows = [{"id": k, "state": v.value, "updated_at": now} for k, v in states.items()]
        await self._upsert(catalog_categories, rows, ("id",))

    async def claim_due(self, now: datetime, limit: int) -> list[DueTrigger]:
        c = campaigns.c
        start_due = (c.status == Status.BOOKED.value) & (c.start_at <= now)
        end_due = c.status.in_(END_DUE_STATUSES) & (c.end_at <= now)
        due_at = case((start_due, func.least(c.start_at, c.end_at)), else_=c.end_at)
        stmt = (
            select(c.id, c.status, c.start_at, c.end_at)
            .where(or_(start_due, end_due))
            .order_by(due_at, c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        triggers = []
        for r in await self.conn.execute(stmt):
            if r.status == Status.BOOKED.value and r.start_at <= now:
                triggers.append(DueTrigger(r.id, "start", r.start_at))
            else:
                triggers.append(DueTrigger(r.id, "end", r.end_at))
        return triggers

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

    async def add_notifications(
        self, requests: Sequence[NotificationRequest]
    ) -> list[NotificationRequest]:
        if not requests:
            return []
        rows = [
            {
                "id": n.id,
                "cause_id": n.cause_id,
                "recipient": n.recipient,
                "kind": n.kind,
                "campaign_id": n.campaign_id,
                "creative_id": n.creative_id,
                "correlation_id": n.correlation_id,
                "message_id": n.message_id,
                "payload": {
                    "subject": n.subject,
                    "to": n.recipient,
                    "template_data": dict(n.template_data),
                },
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": n.requested_at,
                "created_at": n.requested_at,
                "updated_at": n.requested_at,
            }
            for n in requests
        ]
        stmt = (
            insert(notifications)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(notifications.c.id)
        )
        new = {r[0] for r in await self.conn.execute(stmt)}
        return [n for n in requests if n.id in new]

    async def claim_settlements(self, now: datetime, limit: int) -> list[DueSettlement]:
        # The campaign row is what is locked (as by claim_due and every message batch), so
        # a tick and a batch never lock the same campaign's rows in opposite orders.
        a, c = campaign_accounts.c, campaigns.c
        stmt = (
            select(a.campaign_id, a.settle_at)
            .join_from(campaign_accounts, campaigns, c.id == a.campaign_id)
            .where(a.settle_at.is_not(None), a.settle_at <= now)
            .order_by(a.settle_at, a.campaign_id)
            .limit(limit)
            .with_for_update(of=campaigns, skip_locked=True)
        )
        return [DueSettlement(r.campaign_id, r.settle_at) for r in await self.conn.execute(stmt)]

    async def relevance_peers(
        self, product_ids: Iterable[str], min_impressions: int
    ) -> dict[str, dict[UUID, tuple[int, int]]]:
        wanted = sorted(set(product_ids))
        result: dict[str, dict[UUID, tuple[int, int]]] = {p: {} for p in wanted}
        if not wanted:
            return result
        a, c = campaign_accounts.c, campaigns.c
        stmt = (
            select(c.ad_product_id, a.campaign_id, a.live_impressions, a.live_clicks)
            .join_from(campaigns, campaign_accounts, c.id == a.campaign_id)
            .where(c.ad_product_id.in_(wanted), a.live_impressions >= min_impressions)
        )
        for r in await self.conn.execute(stmt):
            result[r.ad_product_id][r.campaign_id] = (r.live_impressions, r.live_clicks)
        return result


__all__ = ["SqlUnitOfWork", "decode_headers", "row_to_campaign"]
