"""The baseline of `make bench`: the worker a team writes first, on the same schema.

One plain aiokafka consumer over the inbound topics, one message at a time; per message one
SQLModel `AsyncSession` and one transaction: the inbox row (`session.get`, then `add`), the
campaign as an ORM object loaded `FOR UPDATE`, changed in place, a history row and the
outgoing CloudEvent as an outbox row; commit; then commit that message's Kafka offset. A relay
task in the same process publishes outbox rows (ORM query in id order, send, `session.delete`
per row, commit).

What it implements (enough for the bench's scenarios, and correctly for them):
`catalog.ad_product_upserted` (upsert via `session.merge`), `campaign.create` (DRAFT; the
product must exist and be buyable; a second create of an id is refused), `campaign.submit`
(DRAFT/REJECTED -> SUBMITTED, the owning advertiser), `review.campaign_approved`
(SUBMITTED -> BOOKED, a publisher), `campaign.pause` (BOOKED/LIVE -> PAUSED) and
`campaign.resume` (back to where it paused), by the owner or a publisher, and
`delivery.reported` (a system actor: one ledger row, billable only while LIVE, and
`delivery.recorded`). A refused command publishes `command.rejected` with a code. Everything
else (other types, money, holds, serving, notifications, dead letters: unreadable input is
logged and skipped) is not implemented: it answers `command.rejected` / `unsupported`.

Settings from the environment, like the real worker: DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS,
CAMPAIGN_WORKER_TOPIC_PREFIX, CAMPAIGN_WORKER_GROUP_ID. SIGTERM stops it after the message in
flight and a last relay round.

    DATABASE_URL=... KAFKA_BOOTSTRAP_SERVERS=... .venv/bin/python bench/naive_worker.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import BaseModel, ValidationError
from sqlalchemy import Column, DateTime, LargeBinary
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger("naive-worker")

INBOUND = (
    "campaign.commands",
    "campaign.reviews",
    "campaign.payments",
    "campaign.schedule",
    "campaign.delivery",
    "campaign.catalog",
)


def _ts() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True)))


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSONB))


# ---------------------------------------------------------------------------- models
# ORM classes over the project's own tables (the columns this worker uses).


class Campaign(SQLModel, table=True):
    __tablename__ = "campaigns"
    id: uuid.UUID = Field(primary_key=True)
    advertiser_id: str
    title: str
    ad_product_id: str
    budget_amount: Decimal
    currency: str
    billing_type: str
    start_at: datetime = _ts()
    end_at: datetime = _ts()
    targeting: dict[str, Any] = _json()
    frequency_cap: dict[str, Any] | None = _json()
    contact_name: str
    contact_email: str
    timezone: str | None = None
    status: str
    paused_from: str | None = None
    version: int
    updated_at: datetime = _ts()


class History(SQLModel, table=True):
    __tablename__ = "campaign_history"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: uuid.UUID
    version: int
    kind: str
    from_status: str | None = None
    to_status: str | None = None
    trigger: str | None = None
    details: dict[str, Any] = _json()
    actor_role: str
    actor_id: str | None = None
    message_id: str
    message_type: str
    correlation_id: str | None = None
    occurred_at: datetime = _ts()


class Inbox(SQLModel, table=True):
    __tablename__ = "inbox"
    message_id: str = Field(primary_key=True)
    type: str
    topic: str
    partition: int
    offset: int


class Outbox(SQLModel, table=True):
    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    topic: str
    key: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: list[Any] = _json()


class AdProduct(SQLModel, table=True):
    __tablename__ = "ad_products"
    id: str = Field(primary_key=True)
    name: str
    unit_ids: list[str] = _json()
    unit_set_valid: bool
    buyable: bool
    deleted: bool = False


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entries"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: uuid.UUID
    kind: str
    amount: Decimal
    currency: str
    ref: str
    billable: bool
    reason: str | None = None
    at: datetime = _ts()
    message_id: str


# ---------------------------------------------------------------------------- messages


class Envelope(BaseModel):
    specversion: Literal["1.0"]
    id: str
    source: str
    type: str
    subject: str | None = None
    actorrole: Literal["advertiser", "publisher", "system"] | None = None
    actorid: str | None = None
    correlationid: str | None = None
    data: dict[str, Any] = {}


class MoneyIn(BaseModel):
    amount: Decimal
    currency: str


class ContactIn(BaseModel):
    name: str
    email: str


class CreateIn(BaseModel):
    advertiser_id: str
    title: str
    ad_product_id: str
    budget: MoneyIn
    billing_type: Literal["card", "manual"]
    start_at: datetime
    end_at: datetime
    targeting: dict[str, Any] = {}
    frequency_cap: dict[str, Any] | None = None
    contact: ContactIn
    timezone: str | None = None


class DeliveryIn(BaseModel):
    period_start: datetime
    period_end: datetime
    impressions: int
    clicks: int
    spend: MoneyIn


class ProductIn(BaseModel):
    ad_product_id: str
    name: str
    unit_ids: list[str] = []
    unit_set_valid: bool
    buyable: bool


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------- handling


def outgoing(env: Envelope, type_: str, data: dict[str, Any], topic: str) -> Outbox:
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/naive-worker",
        "type": type_,
        "subject": env.subject,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "causationid": env.id,
        "correlationid": env.correlationid or env.id,
        "data": data,
    }
    return Outbox(
        topic=topic,
        key=env.subject.encode() if env.subject else None,
        value=json.dumps(event, default=str).encode(),
        headers=[["content-type", "application/cloudevents+json"]],
    )


TRANSITIONS = {
    "campaign.submit": ({"DRAFT", "REJECTED"}, "SUBMITTED"),
    "review.campaign_approved": ({"SUBMITTED"}, "BOOKED"),
    "campaign.pause": ({"BOOKED", "LIVE"}, "PAUSED"),
    "campaign.resume": ({"PAUSED"}, None),  # back to paused_from
}


async def _campaign(session: AsyncSession, env: Envelope) -> Campaign:
    try:
        cid = uuid.UUID(env.subject or "")
    except ValueError as error:
        raise Refused("validation_failed", "subject is not a campaign id") from error
    campaign = await session.get(Campaign, cid, with_for_update=True)
    if campaign is None:
        raise Refused("not_found", f"campaign {cid} does not exist")
    return campaign


def _history(env: Envelope, c: Campaign, kind: str, frm: str | None, now: datetime) -> History:
    return History(
        campaign_id=c.id,
        version=c.version,
        kind=kind,
        from_status=frm,
        to_status=c.status,
        trigger=env.type,
        details={},
        actor_role=env.actorrole or "system",
        actor_id=env.actorid,
        message_id=env.id,
        message_type=env.type,
        correlation_id=env.correlationid,
        occurred_at=now,
    )


async def handle(session: AsyncSession, env: Envelope) -> list[Outbox]:
    now = datetime.now(UTC)
    if env.type == "catalog.ad_product_upserted":
        p = ProductIn.model_validate(env.data)
        await session.merge(
            AdProduct(
                id=p.ad_product_id,
                name=p.name,
                unit_ids=p.unit_ids,
                unit_set_valid=p.unit_set_valid,
                buyable=p.buyable,
            )
        )
        return []
    if env.type == "campaign.create":
        data = CreateIn.model_validate(env.data)
        if env.actorrole == "advertiser" and env.actorid != data.advertiser_id:
            raise Refused("forbidden", "an advertiser creates only their own campaigns")
        cid = uuid.UUID(env.subject or "")
        if await session.get(Campaign, cid) is not None:
            raise Refused("already_exists", f"campaign {cid} exists")
        product = await session.get(AdProduct, data.ad_product_id)
        if product is None or product.deleted or not product.buyable:
            raise Refused("product_not_buyable", f"product {data.ad_product_id} is not buyable")
        if data.end_at <= data.start_at:
            raise Refused("validation_failed", "end_at must be after start_at")
        c = Campaign(
            id=cid,
            advertiser_id=data.advertiser_id,
            title=data.title,
            ad_product_id=data.ad_product_id,
            budget_amount=data.budget.amount,
            currency=data.budget.currency,
            billing_type=data.billing_type,
            start_at=data.start_at,
            end_at=data.end_at,
            targeting=data.targeting,
            frequency_cap=data.frequency_cap,
            contact_name=data.contact.name,
            contact_email=data.contact.email,
            timezone=data.timezone,
            status="DRAFT",
            version=1,
            updated_at=now,
        )
        session.add(c)
        session.add(_history(env, c, "created", None, now))
        return [status_event(env, c, None)]
    if env.type in TRANSITIONS:
        allowed, target = TRANSITIONS[env.type]
        c = await _campaign(session, env)
        if env.type == "review.campaign_approved":
            if env.actorrole != "publisher":
                raise Refused("forbidden", "only the publisher reviews")
        elif env.actorrole != "publisher" and env.actorid != c.advertiser_id:
            raise Refused("forbidden", "not this advertiser's campaign")
        if c.status not in allowed:
            raise Refused("invalid_transition", f"{env.type} is not allowed in {c.status}")
        before = c.status
        if env.type == "campaign.pause":
            c.paused_from = before
        c.status = target or c.paused_from or "BOOKED"
        if env.type == "campaign.resume":
            c.paused_from = None
        c.version += 1
        c.updated_at = now
        session.add(c)
        session.add(_history(env, c, "status_changed", before, now))
        return [status_event(env, c, before)]
    if env.type == "delivery.reported":
        if env.actorrole != "system":
            raise Refused("forbidden", "delivery reports come from the system")
        d = DeliveryIn.model_validate(env.data)
        c = await _campaign(session, env)
        if d.spend.currency != c.currency:
            raise Refused("validation_failed", "spend in another currency")
        billable = c.status == "LIVE"
        session.add(
            LedgerEntry(
                campaign_id=c.id,
                kind="spend",
                amount=d.spend.amount,
                currency=d.spend.currency,
                ref=env.id,
                billable=billable,
                reason=None if billable else "not_live",
                at=now,
                message_id=env.id,
            )
        )
        rows = await session.exec(
            select(LedgerEntry).where(
                LedgerEntry.campaign_id == c.id,
                LedgerEntry.kind == "spend",
                LedgerEntry.billable == True,  # noqa: E712 - a SQL expression
            )
        )
        spent = sum((e.amount for e in rows), Decimal(0)) + (d.spend.amount if billable else 0)
        money = {"currency": c.currency}
        return [
            outgoing(
                env,
                "delivery.recorded",
                {
                    "campaign_id": str(c.id),
                    "billable_spend": {**money, "amount": str(d.spend.amount if billable else 0)},
                    "non_billable_spend": {
                        **money,
                        "amount": str(0 if billable else d.spend.amount),
                    },
                    "spent_total": {**money, "amount": str(spent)},
                    "impressions": d.impressions,
                    "clicks": d.clicks,
                },
                "campaign.events",
            )
        ]
    raise Refused("unsupported", f"{env.type} is not implemented by the naive worker")


def status_event(env: Envelope, c: Campaign, before: str | None) -> Outbox:
    return outgoing(
        env,
        "campaign.status_changed",
        {
            "campaign_id": str(c.id),
            "from": before,
            "to": c.status,
            "version": c.version,
            "actor": {"role": env.actorrole, "id": env.actorid},
        },
        "campaign.events",
    )


# ---------------------------------------------------------------------------- the loops


class NaiveWorker:
    def __init__(self) -> None:
        url = os.environ.get("DATABASE_URL", "postgresql://localhost/campaign_worker")
        self.engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
        self.kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
        self.prefix = os.environ.get("CAMPAIGN_WORKER_TOPIC_PREFIX", "")
        self.group = os.environ.get("CAMPAIGN_WORKER_GROUP_ID", "naive-worker")
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()

    async def consume(self) -> None:
        consumer = AIOKafkaConsumer(
            *[self.prefix + t for t in INBOUND],
            bootstrap_servers=self.kafka,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not self.stopping.is_set():
                try:
                    record = await asyncio.wait_for(consumer.getone(), 0.5)
                except TimeoutError:
                    continue
                await self.process(record)
                await consumer.commit()
                self.wake.set()
        finally:
            await consumer.stop()

    async def process(self, record: Any) -> None:
        try:
            env = Envelope.model_validate_json(record.value)
        except ValidationError as error:
            log.warning("skipping unreadable %s/%d: %s", record.topic, record.offset, error)
            return
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            async with session.begin():
                if await session.get(Inbox, env.id) is not None:
                    return  # a redelivery: done before
                session.add(
                    Inbox(
                        message_id=env.id,
                        type=env.type,
                        topic=record.topic.removeprefix(self.prefix),
                        partition=record.partition,
                        offset=record.offset,
                    )
                )
                try:  # a refusal is raised before anything but the inbox row was added
                    events = await handle(session, env)
                except (Refused, ValidationError, ValueError) as error:
                    code = error.code if isinstance(error, Refused) else "validation_failed"
                    events = [
                        outgoing(
                            env,
                            "command.rejected",
                            {"code": code, "message": str(error)[:500], "type": env.type},
                            "campaign.events",
                        )
                    ]
                for e in events:
                    session.add(e)

    async def relay(self, producer: AIOKafkaProducer) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), 0.2)
            except TimeoutError:
                pass
            self.wake.clear()
            while await self.publish_once(producer):
                pass
            if self.stopping.is_set():
                return

    async def publish_once(self, producer: AIOKafkaProducer) -> int:
        async with AsyncSession(self.engine) as session:
            async with session.begin():
                query = select(Outbox).order_by(Outbox.id).limit(500)  # type: ignore[arg-type]
                rows = (await session.exec(query)).all()
                futures = [
                    await producer.send(
                        self.prefix + r.topic,
                        r.value,
                        key=r.key,
                        headers=[(k, v.encode()) for k, v in r.headers or []],
                    )
                    for r in rows
                ]
                await asyncio.gather(*futures)
                for r in rows:
                    await session.delete(r)
        return len(rows)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all")
        await producer.start()
        relay = asyncio.create_task(self.relay(producer))
        try:
            await self.consume()
        finally:
            self.wake.set()
            await relay
            await producer.stop()
            await self.engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(NaiveWorker().run())
