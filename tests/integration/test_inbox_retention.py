"""Inbox retention on real Postgres: rows older than the retention go, in bounded batches,
newer ones stay, and a message redelivered within the retention is still dropped as a
duplicate (after it, the id is unknown again: the retention bounds how late a duplicate is
recognised). The relay leader runs the retention and counts what it deleted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker import topics
from campaign_worker.adapters.db.errors import is_transient
from campaign_worker.adapters.db.tables import metadata
from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.adapters.metrics import Metrics
from campaign_worker.adapters.outbox import OutboxRelay, prune_inbox
from campaign_worker.config import Settings
from campaign_worker.entrypoints.translate import translate
from campaign_worker.service.envelope import OutboxMessage
from campaign_worker.service.inbound import Inbound, Source
from campaign_worker.service.processor import Processor
from campaign_worker.service.unit_of_work import InboxEntry
from tests.integration import test_relay
from tests.integration.test_relay import fill, outbox_empty
from tests.support.contract import product_event
from tests.support.util import eventually

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)

world = test_relay.world  # the relay tests' Kafka, Postgres and producer (a fixture)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    e = create_async_engine(Settings(database_url=database_url).sqlalchemy_url)
    yield e
    await e.dispose()


def entry(message_id: str, offset: int) -> InboxEntry:
    return InboxEntry(message_id, "t", Source("campaign.catalog", 0, offset, None, b""))


async def seed_inbox(engine: AsyncEngine, ages: dict[str, timedelta]) -> None:
    """Inbox rows with these ids, received that long ago."""
    async with SqlUnitOfWork(engine) as uow:
        entries = [entry(mid, n) for n, mid in enumerate(ages)]
        assert await uow.claim_inbox(entries) == set(ages)
        now = datetime.now(UTC)
        await uow.pg.executemany(
            "UPDATE inbox SET received_at = $2 WHERE message_id = $1",
            [(mid, now - age) for mid, age in ages.items()],
        )
        await uow.commit()


async def inbox_ids(engine: AsyncEngine) -> set[str]:
    async with SqlUnitOfWork(engine) as uow:
        return {r[0] for r in await uow.pg.fetch("SELECT message_id FROM inbox")}


async def test_rows_older_than_the_retention_go_in_bounded_batches_newer_stay(
    engine: AsyncEngine,
) -> None:
    old = {f"old-{n}": 8 * DAY + n * timedelta(minutes=1) for n in range(7)}
    new = {"new-6d": 6 * DAY, "new-1h": timedelta(hours=1), "new-0": timedelta(0)}
    await seed_inbox(engine, old | new)
    cutoff = datetime.now(UTC) - 7 * DAY
    async with SqlUnitOfWork(engine) as uow:
        # three rows per statement, at most two statements: six of the seven old rows
        assert await prune_inbox(uow.pg, cutoff, batch_size=3, max_batches=2) == (6, True)
        assert await prune_inbox(uow.pg, cutoff, batch_size=3, max_batches=2) == (1, False)
        assert await prune_inbox(uow.pg, cutoff, batch_size=3, max_batches=2) == (0, False)
        await uow.commit()
    assert await inbox_ids(engine) == set(new)


async def test_oldest_rows_go_first_when_a_batch_cannot_take_them_all(
    engine: AsyncEngine,
) -> None:
    await seed_inbox(engine, {"oldest": 30 * DAY, "older": 20 * DAY, "old": 10 * DAY})
    async with SqlUnitOfWork(engine) as uow:
        cutoff = datetime.now(UTC) - 7 * DAY
        assert await prune_inbox(uow.pg, cutoff, batch_size=2, max_batches=1) == (2, True)
        await uow.commit()
    assert await inbox_ids(engine) == {"old"}


def catalog_record(event: dict[str, Any], offset: int) -> Inbound:
    item = translate(
        Source("campaign.catalog", 0, offset, b"prod-r", json.dumps(event).encode()),
        max_bytes=1_048_576,
    )
    assert isinstance(item, Inbound), item
    return item


async def test_a_duplicate_within_the_retention_is_still_dropped(engine: AsyncEngine) -> None:
    processor = Processor(
        lambda: SqlUnitOfWork(engine), physical_topic=lambda t: t, is_transient=is_transient
    )
    recent = product_event("prod-recent")
    expired = product_event("prod-expired")
    first = await processor.process([catalog_record(recent, 1), catalog_record(expired, 2)])
    assert len(first.applied) == 2
    async with SqlUnitOfWork(engine) as uow:  # the second one was processed 8 days ago
        await uow.pg.execute(
            "UPDATE inbox SET received_at = received_at - interval '8 days' WHERE message_id = $1",
            expired["id"],
        )
        await uow.pg.execute(
            "UPDATE inbox SET received_at = received_at - interval '6 days' WHERE message_id = $1",
            recent["id"],
        )
        assert await prune_inbox(uow.pg, datetime.now(UTC) - 7 * DAY, batch_size=100) == (
            1,
            False,
        )
        await uow.commit()

    again = await processor.process([catalog_record(recent, 3), catalog_record(expired, 4)])
    assert [d.message_id for d in again.duplicates] == [recent["id"]]  # still known
    assert [i.message_id for i in again.applied] == [expired["id"]]  # past the retention


async def test_the_index_of_migration_0009_matches_the_table(engine: AsyncEngine) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert [c for c in changes if "inbox" in repr(c)] == []


@pytest.mark.e2e
async def test_the_relay_leader_prunes_and_counts(
    engine: AsyncEngine, database_url: str, kafka_bootstrap: str
) -> None:
    """The leader prunes when it takes over and every interval after; the metric counts it.
    (The relay needs a producer to lead; no record is published here.)"""
    from aiokafka import AIOKafkaProducer

    await seed_inbox(engine, {"a": 9 * DAY, "b": 8 * DAY, "c": 6 * DAY})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    metrics = Metrics()
    relay = OutboxRelay(
        engine,
        producer,
        physical_topic=lambda t: t,
        metrics=metrics,
        poll_interval_s=0.05,
        inbox_retention_s=7 * DAY.total_seconds(),
        inbox_prune_interval_s=0.1,
        inbox_prune_batch_size=1,
    )
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _ids_are(engine, {"c"}), timeout=10)
        assert metrics.registry.get_sample_value("campaign_worker_inbox_pruned_total") == 2
        # a row that expires later goes on a later pass
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE inbox SET received_at = received_at - interval '2 days'"
                " WHERE message_id = 'c'"
            )
        finally:
            await conn.close()
        await eventually(lambda: _ids_are(engine, set()), timeout=10)
        assert metrics.registry.get_sample_value("campaign_worker_inbox_pruned_total") == 3
    finally:
        await relay.drain(1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()


async def _ids_are(engine: AsyncEngine, expected: set[str]) -> bool:
    return await inbox_ids(engine) == expected


@pytest.mark.e2e
async def test_a_failing_retention_pass_does_not_stop_publishing(
    world: Any, database_url: str
) -> None:
    settings, engine, producer = world
    conn = await asyncpg.connect(database_url)
    try:  # every pass now fails (no such table); the outbox must still go out
        await conn.execute("ALTER TABLE inbox RENAME TO inbox_elsewhere")
    finally:
        await conn.close()
    metrics = Metrics()
    relay = OutboxRelay(
        engine,
        producer,
        physical_topic=settings.topic,
        metrics=metrics,
        poll_interval_s=0.05,
        inbox_retention_s=1.0,
        inbox_prune_interval_s=0.05,
    )
    task = asyncio.create_task(relay.run())
    try:
        await fill(engine, [OutboxMessage(topics.EVENTS, b"k", b"v")], per_commit=1)
        relay.wake()
        await eventually(lambda: outbox_empty(engine), timeout=10)
        await asyncio.sleep(0.3)  # several failed passes
        assert relay.is_leader
        assert metrics.registry.get_sample_value("campaign_worker_outbox_relay_failures_total") in (
            None,
            0.0,
        )
    finally:
        await relay.drain(1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
