"""The outbox relay on real Kafka and Postgres: batched produce keeps each key on the
partition the producer's default partitioner picks and in outbox order, rows go only after
Kafka acknowledged them, the gauges stay cheap and right, and one relay leads at a time."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker import topics
from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.adapters.kafka_client import ensure_topics
from campaign_worker.adapters.metrics import Metrics
from campaign_worker.adapters.outbox import OutboxRelay, partition_for
from campaign_worker.config import Settings
from campaign_worker.service.envelope import OutboxMessage
from tests.support.util import eventually

pytestmark = pytest.mark.e2e


def test_partition_for_is_the_default_partitioners_choice() -> None:
    rng = random.Random(7)
    keys = [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(2000)]
    keys += [b"", b"a", b"\xff" * 3, bytes(range(256))]
    for n in (1, 3, 6, 7, 12):
        partitions = list(range(n))
        for key in keys:
            assert partition_for(key, partitions, partitions) == DefaultPartitioner()(
                key, partitions, partitions
            )
    assert partition_for(None, [0, 1, 2], [2]) == 2  # no key: an available partition


@pytest.fixture
async def world(
    kafka_bootstrap: str, database_url: str, topic_prefix: str
) -> AsyncIterator[tuple[Settings, AsyncEngine, AIOKafkaProducer]]:
    settings = Settings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        topic_partitions=3,
    )
    await ensure_topics(settings, [settings.topic(t) for t in topics.OUTBOUND])
    engine = create_async_engine(settings.sqlalchemy_url)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        yield settings, engine, producer
    finally:
        await producer.stop()
        await engine.dispose()


async def fill(engine: AsyncEngine, messages: list[OutboxMessage], per_commit: int) -> None:
    for start in range(0, len(messages), per_commit):
        async with SqlUnitOfWork(engine) as uow:
            await uow.add_outbox(messages[start : start + per_commit])
            await uow.commit()


async def outbox_count(engine: AsyncEngine) -> int:
    async with SqlUnitOfWork(engine) as uow:
        return int(await uow.pg.fetchval("SELECT count(*) FROM outbox"))


async def read_all(settings: Settings, topic: str, expected: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < expected:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_batched_produce_keeps_partition_and_order_per_key(world: Any) -> None:
    settings, engine, producer = world
    keys = [str(uuid.uuid4()).encode() for _ in range(40)]
    messages = []
    for n in range(2500):
        key = keys[n % len(keys)] if n % 50 else None  # a few without a key
        value = f'{{"n":{n},"pad":"{"x" * (n % 900)}"}}'.encode()  # batches fill unevenly
        headers = (("content-type", b"application/cloudevents+json"), ("n", str(n).encode()))
        messages.append(OutboxMessage(topics.EVENTS, key, value, headers))
    messages.append(OutboxMessage(topics.DLQ, b"dlq-key", b"raw \xff", ()))
    await fill(engine, messages, per_commit=300)

    metrics = Metrics()
    relay = OutboxRelay(
        engine, producer, physical_topic=settings.topic, metrics=metrics, batch_size=1000
    )
    assert await relay.publish_once() == 1000
    backlog = metrics.registry.get_sample_value("campaign_worker_outbox_backlog")
    assert backlog is not None and 1501 <= backlog  # an upper bound, from the newest id
    assert await relay.publish_once() == 1000
    assert await relay.publish_once() == 501
    assert metrics.registry.get_sample_value("campaign_worker_outbox_backlog") == 0
    assert await relay.publish_once() == 0
    assert await outbox_count(engine) == 0
    published = metrics.registry.get_sample_value(
        "campaign_worker_outbox_published_total", {"topic": topics.EVENTS}
    )
    assert published == 2500

    partitions = sorted(await producer.partitions_for(settings.topic(topics.EVENTS)))
    seen: dict[bytes, list[int]] = defaultdict(list)
    unkeyed = 0
    for record in await read_all(settings, topics.EVENTS, 2500):
        n = int(dict(record.headers)["n"])
        assert record.value == messages[n].value
        assert tuple(record.headers) == messages[n].headers
        if record.key is None:
            unkeyed += 1
            continue
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
        seen[record.key].append(n)
    assert unkeyed == 50
    assert set(seen) == set(keys)
    for ns in seen.values():
        assert ns == sorted(ns), "a key's records were reordered"
    assert sum(len(ns) for ns in seen.values()) == 2450
    [dlq] = await read_all(settings, topics.DLQ, 1)
    assert (dlq.key, dlq.value, list(dlq.headers)) == (b"dlq-key", b"raw \xff", [])


async def test_rows_stay_when_kafka_refuses_them(world: Any) -> None:
    settings, engine, producer = world
    too_big = OutboxMessage(topics.EVENTS, b"k", b"x" * 2_000_000)  # over the broker's limit
    await fill(engine, [OutboxMessage(topics.EVENTS, b"k", b"fine"), too_big], per_commit=2)
    relay = OutboxRelay(engine, producer, physical_topic=settings.topic, metrics=Metrics())
    with pytest.raises(KafkaError):
        await relay.publish_once()
    assert await outbox_count(engine) == 2  # nothing deleted, the acknowledged one included


async def test_one_relay_leads_and_another_takes_over_when_it_stops(world: Any) -> None:
    settings, engine, producer = world
    other_engine = create_async_engine(settings.sqlalchemy_url)  # another replica
    relays = [
        OutboxRelay(
            e, producer, physical_topic=settings.topic, metrics=Metrics(), poll_interval_s=0.05
        )
        for e in (engine, other_engine)
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        await eventually(lambda: leading(relays), timeout=10)
        await asyncio.sleep(0.5)
        assert sum(r.is_leader for r in relays) == 1
        leader = next(r for r in relays if r.is_leader)
        follower = next(r for r in relays if r is not leader)
        await fill(engine, [OutboxMessage(topics.EVENTS, b"k", b"first")], per_commit=1)
        leader.wake()
        await eventually(lambda: outbox_empty(engine), timeout=10)
        await leader.drain(5)
        await asyncio.wait_for(tasks[relays.index(leader)], 5)
        # the lock went with the stopped leader: the other replica now publishes
        await eventually(lambda: leading([follower]), timeout=10)
        await fill(engine, [OutboxMessage(topics.EVENTS, b"k", b"second")], per_commit=1)
        follower.wake()
        await eventually(lambda: outbox_empty(engine), timeout=10)
        values = [r.value for r in await read_all(settings, topics.EVENTS, 2)]
        assert values == [b"first", b"second"]
    finally:
        for r in relays:
            await r.drain(1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await other_engine.dispose()


async def outbox_empty(engine: AsyncEngine) -> bool:
    return await outbox_count(engine) == 0


async def leading(relays: list[OutboxRelay]) -> bool:
    return any(r.is_leader for r in relays)
