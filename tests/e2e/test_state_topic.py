"""`campaign.state` on real Kafka and Postgres: 500 campaigns driven through random
lifecycles; a fresh consumer reading the compacted topic from the beginning holds exactly
what `campaign show --json` reports for every campaign, before and after compaction, and
after `state republish --all` filled an emptied topic."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy.ext.asyncio import create_async_engine

from campaign_worker.adapters.db.queries import load_report
from campaign_worker.adapters.kafka_client import topic_policies
from tests.conftest import Harness
from tests.support.contract import Driver, create_data, iso
from tests.support.ops import run_cli
from tests.support.util import eventually, seed_product

pytestmark = pytest.mark.e2e

CAMPAIGNS = 500
PARTITIONS = 3  # as the harness's worker creates topics, and as created here
UNIT = "unit-728x90"
# Set on the topic the worker created (with the policy alone) once the walk is done: small
# segments, and a cleaner that takes a partition as soon as anything is dirty, so that
# compaction runs within the test.
FAST_COMPACTION = {
    "cleanup.policy": "compact",
    "segment.ms": "2000",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "1000",
    "max.compaction.lag.ms": "2000",
}


async def create_state_topic(h: Harness) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=h.kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(f"{h.prefix}campaign.state", PARTITIONS, 1, topic_configs=FAST_COMPACTION)]
        )
    finally:
        await admin.close()


async def compact_fast(h: Harness) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=h.kafka)
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, f"{h.prefix}campaign.state", FAST_COMPACTION)]
        )
    finally:
        await admin.close()


async def delete_state_topic(h: Harness) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=h.kafka)
    await admin.start()
    try:
        await admin.delete_topics([f"{h.prefix}campaign.state"])

        async def gone() -> bool:
            return f"{h.prefix}campaign.state" not in set(await admin.list_topics())

        await eventually(gone, timeout=30)
    finally:
        await admin.close()


async def read_state_topic(
    h: Harness, *, strict: bool = False
) -> tuple[dict[str, dict[str, Any]], int, int]:
    """Read the topic from the beginning to its end: the latest record per key, how many
    records the topic holds, and how many were ever written to it (its end offsets).
    Versions never go down per key in offset order (`strict`: they grow with every record;
    a republished record repeats its campaign's current version)."""
    topic = f"{h.prefix}campaign.state"
    consumer = AIOKafkaConsumer(bootstrap_servers=h.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        latest: dict[str, dict[str, Any]] = {}
        count = 0

        async def behind() -> bool:
            for tp in partitions:
                if await consumer.position(tp) < ends[tp]:
                    return True
            return False

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    count += 1
                    event = json.loads(r.value)
                    assert r.key == event["subject"].encode()
                    held = latest.get(event["subject"])
                    version = event["data"]["version"]
                    assert (
                        held is None
                        or version > held["version"]
                        or (not strict and version == held["version"])
                    ), (
                        "a record older than the one before it",
                        event["data"],
                        held,
                    )
                    latest[event["subject"]] = event["data"]
        return latest, count, sum(ends.values())
    finally:
        await consumer.stop()


class Walk:
    """Phases of commands; each phase waits until the worker has taken every command of it
    (inbox) and published everything (outbox empty): the topics order nothing across them."""

    def __init__(self, h: Harness, seed: int) -> None:
        self.h = h
        self.drv = Driver(h)
        self.rng = random.Random(seed)
        self.ids: list[str] = []
        self.creatives: dict[str, list[str]] = {}
        self.sent = 0

    async def phase(self, commands: list[tuple[str, str, dict[str, Any] | None, str]]) -> None:
        ids = []
        futures = []
        for type_, cid, data, as_ in commands:
            topic, event = self.drv.build(type_, cid, data, as_=as_)
            futures.append(await self.h.up.send_nowait(topic, event))
            ids.append(event["id"])
        await asyncio.gather(*futures)
        self.sent += len(ids)

        async def taken() -> bool:
            rows = await self.h.fetch(
                "SELECT count(*) AS n FROM inbox WHERE message_id = ANY($1::text[])", ids
            )
            return bool(rows[0]["n"] == len(ids))

        await eventually(taken, timeout=120, interval=0.3)
        await outbox_empty(self.h)

    def some(self, share: float, among: list[str] | None = None) -> list[str]:
        return [c for c in (among if among is not None else self.ids) if self.rng.random() < share]

    async def statuses(self) -> dict[str, str]:
        rows = await self.h.fetch(
            "SELECT id::text, status FROM campaigns WHERE id = ANY($1::uuid[])",
            [uuid.UUID(c) for c in self.ids],
        )
        return {r["id"]: r["status"] for r in rows}


async def outbox_empty(h: Harness) -> None:
    async def empty() -> bool:
        return not await h.fetch("SELECT 1 FROM outbox LIMIT 1")

    await eventually(empty, timeout=120, interval=0.3)


async def drive_random_lifecycles(walk: Walk) -> None:
    now = datetime.now(UTC)
    starts = now + timedelta(seconds=60)  # far enough for every phase before the start
    walk.ids = [str(uuid.uuid4()) for _ in range(CAMPAIGNS)]
    ends_soon = set(walk.some(0.15))
    await walk.phase(
        [
            (
                "campaign.create",
                cid,
                create_data(
                    billing_type="manual",
                    start_at=iso(starts),
                    end_at=iso(starts + timedelta(seconds=20 if cid in ends_soon else 86400)),
                    budget={"amount": walk.rng.choice(["500.00", "1000.00"]), "currency": "EUR"},
                ),
                "advertiser",
            )
            for cid in walk.ids
        ]
    )
    commands: list[tuple[str, str, dict[str, Any] | None, str]] = []
    for cid in walk.some(0.7):
        walk.creatives[cid] = [f"cr-{n}" for n in range(walk.rng.randint(1, 3))]
        for creative_id in walk.creatives[cid]:
            commands.append(
                (
                    "creative.create",
                    cid,
                    {
                        "creative_id": creative_id,
                        "name": "Banner",
                        "ad_unit_id": UNIT,
                        "content": {
                            "file_url": "https://cdn.example.com/b.png",
                            "destination_url": "https://shop.example.com/sale",
                            "text": "50% off",
                        },
                    },
                    "advertiser",
                )
            )
    await walk.phase(commands)
    await walk.phase(
        [("campaign.submit", c, None, "advertiser") for c in walk.some(0.9)]
        + [("campaign.update", c, {"title": "Renamed"}, "advertiser") for c in walk.some(0.1)]
    )
    submitted = [c for c, s in (await walk.statuses()).items() if s == "SUBMITTED"]
    approve = walk.some(0.8, submitted)
    reject = [c for c in submitted if c not in approve and walk.rng.random() < 0.5]
    reviews: list[tuple[str, str, dict[str, Any] | None, str]] = [
        ("review.campaign_approved", c, None, "publisher") for c in approve
    ] + [("review.campaign_rejected", c, {"reason": "Not allowed"}, "publisher") for c in reject]
    for cid, creative_ids in walk.creatives.items():
        for creative_id in creative_ids:
            verdict = walk.rng.random()
            if verdict < 0.7:
                reviews.append(
                    ("review.creative_approved", cid, {"creative_id": creative_id}, "publisher")
                )
            elif verdict < 0.85:
                reviews.append(
                    (
                        "review.creative_rejected",
                        cid,
                        {"creative_id": creative_id, "reason": "blurry"},
                        "publisher",
                    )
                )
    await walk.phase(reviews)
    booked = [c for c, s in (await walk.statuses()).items() if s == "BOOKED"]
    holds: list[tuple[str, str, dict[str, Any] | None, str]] = []
    holds += [
        ("review.campaign_suspended", c, {"reason": "policy"}, "publisher")
        for c in walk.some(0.1, booked)
    ]
    holds += [
        ("review.landing_page_status", c, {"available": False}, "publisher")
        for c in walk.some(0.08, booked)
    ]
    holds += [("campaign.pause", c, None, "advertiser") for c in walk.some(0.15, booked)]
    for cid in walk.some(0.2, list(walk.creatives)):
        holds.append(("creative.pause", cid, {"creative_id": walk.creatives[cid][0]}, "advertiser"))
    await walk.phase(holds)
    await walk.phase(
        [("campaign.cancel", c, None, "advertiser") for c in walk.some(0.06)]
        + [
            ("creative.delete", c, {"creative_id": walk.creatives[c][-1]}, "advertiser")
            for c in walk.some(0.1, list(walk.creatives))
        ]
    )
    # the start instant passes: the scheduler takes the booked campaigns LIVE
    await asyncio.sleep(max(0.0, (starts - datetime.now(UTC)).total_seconds() + 2))

    async def started() -> bool:
        return "BOOKED" not in set((await walk.statuses()).values())

    await eventually(started, timeout=60, interval=0.5)
    await outbox_empty(walk.h)
    live = [c for c, s in (await walk.statuses()).items() if s == "LIVE"]
    report_at = datetime.now(UTC) - timedelta(seconds=1)
    await walk.phase(
        [
            (
                "delivery.reported",
                c,
                {
                    "period_start": iso(report_at - timedelta(seconds=1)),
                    "period_end": iso(report_at),
                    "impressions": walk.rng.randint(100, 5000),
                    "clicks": walk.rng.randint(5, 100),
                    "spend": {"amount": f"{walk.rng.randint(1, 80)}.00", "currency": "EUR"},
                },
                "system",
            )
            for c in walk.some(0.8, live)
        ]
        + [("review.campaign_reinstated", c, {}, "publisher") for c in walk.some(0.5)]
        + [("campaign.resume", c, None, "advertiser") for c in walk.some(0.3)]
    )
    await walk.phase([("campaign.cancel", c, None, "advertiser") for c in walk.some(0.05, live)])

    # the short campaigns' end passes: closed by the scheduler
    async def closed() -> bool:
        statuses = await walk.statuses()
        return all(statuses[c] not in ("LIVE", "PAUSED") for c in ends_soon)

    await eventually(closed, timeout=90, interval=0.5)
    await outbox_empty(walk.h)


async def reports(h: Harness, ids: list[str]) -> dict[str, dict[str, Any]]:
    engine = create_async_engine(h.settings().sqlalchemy_url, pool_size=1)
    try:
        found = {}
        for cid in ids:
            report = await load_report(engine, uuid.UUID(cid))
            assert report is not None
            found[cid] = report
        return found
    finally:
        await engine.dispose()


def assert_topic_equals_reports(
    latest: dict[str, dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> None:
    assert set(latest) == set(by_id)
    differ = [cid for cid in by_id if latest[cid] != by_id[cid]["state"]]
    assert not differ, (len(differ), latest[differ[0]], by_id[differ[0]]["state"])
    for cid, report in by_id.items():  # the state agrees with the rest of the report
        assert latest[cid]["status"] == report["campaign"]["status"]
        assert latest[cid]["version"] == report["campaign"]["version"]
        assert latest[cid]["display_status"] == report["serving"]["display_status"]


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_fresh_consumer_of_the_state_topic_holds_what_campaign_show_reports(
    harness: Harness,
) -> None:
    await harness.start_worker(scheduler_tick_s=0.2, settlement_grace_s=0)
    await seed_product(harness)
    walk = Walk(harness, seed=1202)
    await drive_random_lifecycles(walk)
    statuses = set((await walk.statuses()).values())
    assert {"DRAFT", "SUBMITTED", "REJECTED", "LIVE", "PAUSED", "CLOSED", "CANCELLED"} <= statuses

    # 1. a fresh consumer from the beginning (nothing compacted yet: every record is there)
    by_id = await reports(harness, walk.ids)
    latest, count, written = await read_state_topic(harness, strict=True)
    assert count == written > 2 * CAMPAIGNS
    assert_topic_equals_reports(latest, by_id)
    assert any(s["creatives"] for s in latest.values())
    assert any(s["holds"] and not s["serving"] for s in latest.values())
    assert any(s["serving"] for s in latest.values())
    assert any(s["spent_total"]["amount"] != "0.00" for s in latest.values())
    for cid in walk.rng.sample(walk.ids, 3):  # the CLI says the same
        shown = await run_cli(harness, "campaign", "show", cid, "--json")
        assert shown.code == 0, shown.err
        assert json.loads(shown.out)["state"] == latest[cid]

    # 2. after compaction: fewer records, the same map. A segment rolls only when a record
    # comes after segment.ms: the republish of a few campaigns writes those records.
    await compact_fast(harness)
    await asyncio.sleep(2.5)
    republished = await run_cli(
        harness, "state", "republish", *[a for c in walk.ids[:5] for a in ("--campaign", c)]
    )
    assert republished.code == 0, republished.err
    await outbox_empty(harness)

    async def compacted() -> Any:
        latest, count, written = await read_state_topic(harness)
        return (latest, count) if count < written * 0.8 else None

    latest, kept = await eventually(compacted, timeout=120, interval=3)
    assert kept >= CAMPAIGNS  # at least the latest record of every campaign stays
    assert_topic_equals_reports(latest, by_id)

    # 3. an emptied topic filled by `state republish --all`, the worker down meanwhile
    for worker in list(harness.workers):
        await harness.stop_worker(worker)
    await delete_state_topic(harness)
    await create_state_topic(harness)
    filled = await run_cli(harness, "state", "republish", "--all", "--batch-size", "120")
    assert filled.code == 0, filled.err
    assert f"wrote the state of {CAMPAIGNS} campaign(s)" in filled.out
    assert "state republish" in filled.err  # the progress bar
    await harness.start_worker(scheduler_tick_s=0.2, settlement_grace_s=0)
    await outbox_empty(harness)
    latest, count, written = await read_state_topic(harness, strict=True)
    assert count == written == CAMPAIGNS
    assert_topic_equals_reports(latest, await reports(harness, walk.ids))


async def test_the_worker_creates_the_state_topic_compacted(harness: Harness) -> None:
    await harness.start_worker()
    admin = AIOKafkaAdminClient(bootstrap_servers=harness.kafka)
    await admin.start()
    try:
        policies = await topic_policies(
            admin, [f"{harness.prefix}campaign.state", f"{harness.prefix}campaign.events"]
        )
    finally:
        await admin.close()
    assert policies[f"{harness.prefix}campaign.state"] == "compact"
    assert policies[f"{harness.prefix}campaign.events"] == "delete"
