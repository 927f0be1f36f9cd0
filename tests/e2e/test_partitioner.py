"""The contract names the partitioner: a producer must map a key to a partition the way the
Java client does (murmur2; aiokafka's default). A librdkafka producer (confluent-kafka) does so
with `partitioner=murmur2_random`, and the worker then applies each campaign's commands in
order; with librdkafka's default partitioner the same campaigns land elsewhere."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.conftest import Harness
from tests.e2e.test_operators import COMMANDS, _topics
from tests.support.contract import create_event
from tests.support.kafka_io import cloudevent
from tests.support.util import eventually, seed_product

confluent_kafka = pytest.importorskip("confluent_kafka", reason="the test extras bring it")

pytestmark = pytest.mark.e2e

CAMPAIGNS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"partitioner-{i}")) for i in range(12)]
UPDATES = 5
PARTITIONS = [0, 1, 2]  # the harness creates 3 partitions per topic


def _produce(h: Harness, config: dict[str, Any], messages: list[dict[str, Any]]) -> list[int]:
    """Produce with confluent-kafka (librdkafka); the partition each record landed on."""
    producer = confluent_kafka.Producer({"bootstrap.servers": h.kafka, **config})
    landed: list[int] = [-1] * len(messages)

    def report(index: int) -> Any:
        def done(error: Any, record: Any) -> None:
            assert error is None, error
            landed[index] = record.partition()

        return done

    for i, event in enumerate(messages):
        producer.produce(
            f"{h.prefix}{COMMANDS}",
            json.dumps(event).encode(),
            key=event["subject"].encode(),
            headers=[("content-type", b"application/cloudevents+json")],
            on_delivery=report(i),
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    return landed


def _java_partition(key: str) -> int:
    return int(DefaultPartitioner()(key.encode(), PARTITIONS, PARTITIONS))


async def test_librdkafka_with_murmur2_random_partitions_like_java_and_order_holds(
    harness: Harness,
) -> None:
    await _topics(harness)
    await harness.start_worker()
    await seed_product(harness)
    messages, ids = [], {c: [] for c in CAMPAIGNS}
    for campaign in CAMPAIGNS:  # every campaign's commands, interleaved with the others'
        messages.append(create_event(campaign))
    for n in range(1, UPDATES + 1):
        for campaign in CAMPAIGNS:
            messages.append(cloudevent("campaign.update", campaign, {"title": f"v{n}"}))
    for event in messages:
        ids[event["subject"]].append(event["id"])

    landed = await asyncio.to_thread(_produce, harness, {"partitioner": "murmur2_random"}, messages)
    for event, partition in zip(messages, landed, strict=True):
        assert partition == _java_partition(event["subject"]), event["subject"]

    async def applied() -> bool:
        rows = await harness.fetch(
            "SELECT id, title, version FROM campaigns WHERE id = ANY($1::uuid[])", CAMPAIGNS
        )
        return len(rows) == len(CAMPAIGNS) and all(r["version"] == UPDATES + 1 for r in rows)

    await eventually(applied, timeout=60)
    for campaign in CAMPAIGNS:
        history = await harness.fetch(
            "SELECT message_id FROM campaign_history WHERE campaign_id = $1 ORDER BY version",
            uuid.UUID(campaign),
        )
        assert [h["message_id"] for h in history] == ids[campaign]  # produced order kept
        [row] = await harness.fetch("SELECT title FROM campaigns WHERE id = $1", campaign)
        assert row["title"] == f"v{UPDATES}"


async def test_librdkafka_default_partitioner_puts_campaigns_elsewhere(harness: Harness) -> None:
    """Why the contract says so: librdkafka's default (consistent_random, CRC32) disagrees."""
    await _topics(harness)
    probes = [
        cloudevent("campaign.submit", campaign, id_=f"probe-{campaign}") for campaign in CAMPAIGNS
    ]
    landed = await asyncio.to_thread(_produce, harness, {}, probes)
    java = [_java_partition(c) for c in CAMPAIGNS]
    assert landed != java
    assert sum(a != b for a, b in zip(landed, java, strict=True)) >= 3
