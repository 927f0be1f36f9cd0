"""What the SQL unit of work costs per batch, statement by statement (not a test).

Runs the calls a batch of campaign creates and a batch of updates make, with `--rows`
campaigns per batch (500, the production batch size), against a real Postgres (started like
the test suite starts it, or `DATABASE_URL`), and prints for each call the median wall time
and the median CPU time of this process (the client side: SQL building, encoding, row
mapping; Postgres's own work is the difference to wall time, roughly).

    .venv/bin/python bench/micro_uow.py [--rows 500] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine
from tests.support.servers import postgres_server

from campaign_worker.adapters.db.migrate import upgrade
from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.config import Settings
from campaign_worker.domain.model import (
    BillingType,
    Campaign,
    Contact,
    FrequencyCap,
    Status,
    Targeting,
)
from campaign_worker.domain.money import Money
from campaign_worker.service.envelope import OutboxMessage
from campaign_worker.service.inbound import Source
from campaign_worker.service.unit_of_work import HistoryEntry, InboxEntry

T = TypeVar("T")
timings: dict[str, list[tuple[float, float]]] = defaultdict(list)


async def timed(name: str, call: Callable[[], Awaitable[T]]) -> T:
    wall, cpu = time.perf_counter(), time.process_time()
    result = await call()
    timings[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return result


def campaign(now: datetime) -> Campaign:
    return Campaign(
        id=uuid.uuid4(),
        advertiser_id="adv-1",
        title="Winter sale",
        ad_product_id="prod-1",
        budget=Money(Decimal("1250.00"), "EUR"),
        billing_type=BillingType.CARD,
        start_at=now + timedelta(days=1),
        end_at=now + timedelta(days=30),
        targeting=Targeting(categories=("books", "travel"), groups=("g1",)),
        frequency_cap=FrequencyCap(impressions=3, per="day"),
        contact=Contact(name="Ada", email="ada@example.com"),
        timezone="Europe/Berlin",
    )


def history(c: Campaign, now: datetime, kind: str) -> HistoryEntry:
    return HistoryEntry(
        campaign_id=c.id,
        version=c.version,
        kind=kind,
        actor_role="advertiser",
        actor_id="adv-1",
        message_id=str(uuid.uuid4()),
        message_type="campaign.create",
        correlation_id="corr-1",
        occurred_at=now,
        from_status=None if kind == "created" else "DRAFT",
        to_status=c.status.value,
        trigger=None,
        details={"fields": ["title", "budget"], "reason": None},
    )


def outgoing(c: Campaign) -> OutboxMessage:
    value = (
        b'{"specversion":"1.0","id":"' + str(uuid.uuid4()).encode() + b'","source":'
        b'"/campaign-worker","type":"campaign.status_changed","time":"2026-12-01T00:00:00Z",'
        b'"datacontenttype":"application/json","data":{"campaign_id":"'
        + str(c.id).encode()
        + b'","from_status":"DRAFT","to_status":"SUBMITTED"'
        + b',"padding":"'
        + b"x" * 600
        + b'"}}'
    )
    return OutboxMessage(topic="campaign.events", key=str(c.id).encode(), value=value)


async def round_trip(engine: Any, rows: int, offset: int) -> list[uuid.UUID]:
    now = datetime.now(UTC)
    created = [campaign(now) for _ in range(rows)]
    entries = [
        InboxEntry(
            str(uuid.uuid4()),
            "campaign.create",
            Source("campaign.commands", 0, offset + i, None, b"{}"),
        )
        for i in range(rows)
    ]
    created_history = [history(c, now, "created") for c in created]
    created_out = [outgoing(c) for c in created]
    async with SqlUnitOfWork(engine) as uow:
        await timed("claim_inbox", lambda: uow.claim_inbox(entries))
        await timed("lock_campaigns (new ids)", lambda: uow.lock_campaigns(c.id for c in created))
        await timed("save_campaigns (insert)", lambda: uow.save_campaigns(created, now))
        await timed(
            "add_history (created)",
            lambda: uow.add_history(created_history),
        )
        await timed("add_outbox", lambda: uow.add_outbox(created_out))
        await timed("commit", uow.commit)

    async with SqlUnitOfWork(engine) as uow:
        locked = await timed(
            "lock_campaigns (existing)", lambda: uow.lock_campaigns(c.id for c in created)
        )
        await timed("load_extras", lambda: uow.load_extras(locked))
        await timed("status_history", lambda: uow.status_history(locked))
        await timed("get_products", lambda: uow.get_products(["prod-1", "prod-2"]))
        await timed("get_categories", lambda: uow.get_categories(["books", "travel", "g1"]))
        booked = [
            replace(
                c,
                status=Status.BOOKED,
                version=c.version + 1,
                start_at=now - timedelta(minutes=1),
            )
            for c in locked.values()
        ]
        booked_history = [history(c, now, "status_changed") for c in booked]
        booked_out = [outgoing(c) for c in booked]
        await timed("save_campaigns (update)", lambda: uow.save_campaigns(booked, now))
        await timed(
            "add_history (status)",
            lambda: uow.add_history(booked_history),
        )
        await timed("add_outbox", lambda: uow.add_outbox(booked_out))
        await timed("commit", uow.commit)

    async with SqlUnitOfWork(engine) as uow:
        await timed("claim_due", lambda: uow.claim_due(datetime.now(UTC), rows))
        # not committed: the next round claims the same campaigns again
    return [c.id for c in created]


async def main(rows: int, rounds: int) -> None:
    with postgres_server() as url:
        name = f"bench_uow_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        db_url = url.rpartition("/")[0] + "/" + name
        settings = Settings(database_url=db_url)
        await upgrade(settings.sqlalchemy_url)
        engine = create_async_engine(settings.sqlalchemy_url, pool_size=2)
        try:
            for r in range(rounds + 1):
                if r == 1:
                    timings.clear()  # the first round warms caches and connections
                await round_trip(engine, rows, r * rows)
        finally:
            await engine.dispose()
            admin = await asyncpg.connect(url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(f"{rows} rows per batch, median of {rounds} rounds (client CPU = this process):")
    print(f"  {'call':32s} {'wall ms':>9s} {'cpu ms':>9s}")
    for call, samples in timings.items():
        wall = statistics.median(s[0] for s in samples) * 1000
        cpu = statistics.median(s[1] for s in samples) * 1000
        print(f"  {call:32s} {wall:9.1f} {cpu:9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.rounds))
