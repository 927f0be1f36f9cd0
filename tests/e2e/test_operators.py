"""What operators see and do, on real Kafka and Postgres: consumer lag (CLI and the worker's own
probe), lag statuses, dead-letter replay, JSON logs, and outgoing messages that match the
checked-in schemas."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import generate_latest

from campaign_worker import topics
from campaign_worker.adapters.kafka_client import client_kwargs, ensure_topics
from campaign_worker.adapters.lag import LagProbe, Status, measure
from campaign_worker.adapters.metrics import Metrics
from campaign_worker.entrypoints import messages_out
from tests.conftest import Harness
from tests.support.contract import Driver, create_event
from tests.support.ops import (
    DEPLOY,
    member_of_group,
    metric_names,
    metric_samples,
    run_cli,
    scrape,
)
from tests.support.schemas import validate_outgoing
from tests.support.util import eventually, seed_product

pytestmark = pytest.mark.e2e

COMMANDS = "campaign.commands"


async def _topics(h: Harness) -> None:
    settings = h.settings()
    await ensure_topics(settings, [settings.topic(t) for t in topics.INBOUND + topics.OUTBOUND])


async def _produce(h: Harness, n: int) -> list[dict[str, Any]]:
    """n creates for products nobody has: each becomes a refusal once a worker runs."""
    events = [create_event(str(uuid.uuid4()), ad_product_id="prod-missing") for _ in range(n)]
    futures = [await h.up.send_nowait(COMMANDS, e) for e in events]
    await asyncio.gather(*futures)
    return events


def _by_partition(report: dict[str, Any], topic: str) -> dict[int, dict[str, Any]]:
    return {p["partition"]: p for p in report["partitions"] if p["topic"] == topic}


async def test_lag_of_a_stopped_worker_then_caught_up(harness: Harness) -> None:
    await _topics(harness)
    await _produce(harness, 500)
    physical = f"{harness.prefix}{COMMANDS}"

    # The CLI, against the cluster, while no worker runs.
    result = await run_cli(
        harness,
        "lag",
        "--bootstrap-servers",
        harness.kafka,
        "--samples",
        "2",
        "--interval",
        "0.5",
        "--json",
    )
    assert result.code == 1, result.err  # not OK: nobody consumes
    report = json.loads(result.out)
    commands = _by_partition(report, physical)
    assert sum(p["lag"] for p in commands.values()) == 500 == report["total_lag"]
    assert all(p["committed"] is None for p in commands.values())  # the group never committed
    assert {p["status"] for p in commands.values() if p["lag"]} == {"STOP"}
    assert report["status"] == "STOP" and report["members"] == 0
    assert all(p["lag_seconds"] > 0 for p in commands.values() if p["lag"])
    cli_seconds = max(p["lag_seconds"] for p in commands.values())
    other = [p for p in report["partitions"] if p["topic"] != physical]
    assert other and all(p["lag"] == 0 and p["status"] == "OK" for p in other)

    # The probe's metrics: offset lag 500, lag seconds growing between samples.
    metrics = Metrics()
    settings = harness.settings()
    probe = LagProbe(
        client_kwargs(settings),
        settings.group_id,
        [settings.topic(t) for t in topics.INBOUND],
        metrics,
        contract_topic=lambda t: t.removeprefix(harness.prefix),
        window=2,
    )
    try:
        seconds = []
        for _ in range(2):
            assert await probe.sample_once() is not None
            text = generate_latest(metrics.registry).decode()
            lag = metric_samples(text, "campaign_worker_consumer_lag_messages")
            assert sum(s.value for s in lag if s.labels["topic"] == COMMANDS) == 500
            ages = metric_samples(text, "campaign_worker_consumer_lag_seconds")
            seconds.append(max(s.value for s in ages if s.labels["topic"] == COMMANDS))
            await asyncio.sleep(1.0)
        assert seconds[1] >= seconds[0] + 0.9 and seconds[0] >= cli_seconds
        group = metric_samples(text, "campaign_worker_consumer_group_status")
        assert {s.labels["status"] for s in group if s.value == 1} == {"STOP"}
    finally:
        await probe.close()

    # Start the worker: it drains the backlog and its own probe reports lag 0, status OK.
    worker = await harness.start_worker(lag_interval_s=0.3, lag_window=2)

    async def caught_up() -> bool:
        text = await scrape(worker.http.port)
        lag = metric_samples(text, "campaign_worker_consumer_lag_messages")
        status = metric_samples(text, "campaign_worker_consumer_group_status")
        inbound = {s.labels["topic"] for s in lag}
        return (
            inbound == set(topics.INBOUND)
            and all(s.value == 0 for s in lag)
            and {s.labels["status"] for s in status if s.value == 1} == {"OK"}
        )

    await eventually(caught_up, timeout=60, interval=0.3)
    text = await scrape(worker.http.port)
    members = metric_samples(text, "campaign_worker_consumer_group_members")
    assert [s.value for s in members] == [1]
    refusals = await harness.down.wait_for(lambda r: r.type == "command.rejected", count=500)
    for r in refusals:
        validate_outgoing(r.event)

    result = await run_cli(harness, "lag", "--samples", "1")
    assert result.code == 0, result.out + result.err
    header, columns, *rows = result.out.splitlines()
    assert "status OK" in header and "total lag 0" in header
    assert columns.split() == [
        *("topic", "part", "committed", "end", "lag", "lag_s", "still_s", "status")
    ]
    assert len(rows) == len(topics.INBOUND) * 3 and all(r.endswith("OK") for r in rows)


async def test_a_frozen_committed_offset_with_lag_is_stall_and_nobody_there_is_stop(
    harness: Harness,
) -> None:
    await _topics(harness)
    await _produce(harness, 30)
    member = await member_of_group(harness, COMMANDS)
    physical = f"{harness.prefix}{COMMANDS}"
    try:
        ends = await member.end_offsets([TopicPartition(physical, p) for p in range(3)])
        tp, end = max(ends.items(), key=lambda kv: kv[1])
        assert end > 1
        await member.commit({tp: 1})  # one message consumed, then nothing moves
        await _produce(harness, 30)
        settings = harness.settings()
        report = await measure(
            client_kwargs(settings),
            settings.group_id,
            [settings.topic(t) for t in topics.INBOUND],
            samples=3,
            interval_s=0.5,
            stall_after_s=1.0,  # STALL is judged on time standing still (default 30 s)
        )
        [frozen] = [p for p in report.partitions if (p.sample.topic, p.sample.partition) == tp]
        assert frozen.sample.committed == 1 and frozen.sample.lag > 0
        assert frozen.status is Status.STALL and frozen.unmoved_s >= 1.0
        assert report.status is Status.STALL and report.members == 1
        result = await run_cli(
            harness, "lag", "--samples", "3", "--interval", "0.4", "--stall-after", "0.8"
        )
        assert result.code == 1
        row = next(
            line
            for line in result.out.splitlines()
            if line.startswith(physical) and line.split()[1] == str(tp.partition)
        )
        assert row.split()[2] == "1" and row.split()[-1] == "STALL", result.out
    finally:
        await member.stop()  # leaves the group: now nobody consumes

    report = await measure(
        client_kwargs(settings),
        settings.group_id,
        [settings.topic(t) for t in topics.INBOUND],
        samples=2,
        interval_s=0.3,
    )
    [frozen] = [p for p in report.partitions if (p.sample.topic, p.sample.partition) == tp]
    assert frozen.status is Status.STOP and report.members == 0


async def test_dead_letter_replayed_after_the_cause_is_fixed_is_processed_once(
    harness: Harness,
) -> None:
    worker = await harness.start_worker(max_message_bytes=2048)
    await seed_product(harness)
    cid = str(uuid.uuid4())
    event = create_event(cid)
    event["correlationid"] = "req-replay"
    event["padding"] = "x" * 3000  # unknown fields are ignored, but the record is too large
    original = json.dumps(event).encode()
    headers = [("content-type", b"application/cloudevents+json"), ("trace", b"\xff\x00")]
    meta = await harness.up.send_raw(COMMANDS, original, key=cid, headers=headers)

    [dead] = await harness.down.wait_for(lambda r: r.topic == "campaign.dlq")
    validate_outgoing(dead.event)
    assert dead.data["error"]["code"] == "too_large"

    listed = await run_cli(harness, "dlq", "list", "--json")
    assert listed.code == 0, listed.err
    [row] = json.loads(listed.out)
    assert row["error_code"] == "too_large" and row["replayed_at"] is None
    assert (row["topic"], row["partition"], row["offset"]) == (
        COMMANDS,
        meta.partition,
        meta.offset,
    )
    shown = await run_cli(harness, "dlq", "show", str(row["id"]), "--json")
    assert shown.code == 0, shown.err
    detail = json.loads(shown.out)
    assert detail["value"] == original.decode() and detail["key"] == cid
    assert detail["headers"][1] == {"key": "trace", "value": "base64:/wA="}
    text = await run_cli(harness, "dlq", "list")
    assert "too_large" in text.out and str(meta.offset) in text.out

    # The cause is outside the bytes: restart the worker with the default size limit.
    await harness.stop_worker(worker)
    worker = await harness.start_worker()

    replay = await run_cli(
        harness, "dlq", "replay", str(row["id"]), CAMPAIGN_WORKER_LOG_FORMAT="json"
    )
    assert replay.code == 0, replay.err
    assert f"queued for {harness.prefix}{COMMANDS}" in replay.out
    log_line = next(
        json.loads(line) for line in replay.err.splitlines() if "queued for replay" in line
    )
    assert log_line["dead_letter_id"] == row["id"] and log_line["topic"] == COMMANDS
    assert log_line["level"] == "INFO" and log_line["error_code"] == "too_large"
    assert "message_id" not in log_line  # a too-large record is dead-lettered unread

    again = await run_cli(harness, "dlq", "replay", str(row["id"]))
    assert again.code == 1 and "already replayed" in again.err

    [created] = await harness.down.wait_for(
        lambda r: r.type == "campaign.status_changed" and r.event.get("subject") == cid
    )
    validate_outgoing(created.event)
    assert created.data["to"] == "DRAFT" and created.event["causationid"] == event["id"]
    assert created.event["correlationid"] == "req-replay"

    # Re-published byte for byte: same value, key and headers, at a new offset.
    [inbox] = await harness.fetch(
        'SELECT partition, "offset" FROM inbox WHERE message_id=$1', event["id"]
    )
    assert (inbox["partition"], inbox["offset"]) != (meta.partition, meta.offset)
    record = await _read_record(harness, COMMANDS, inbox["partition"], inbox["offset"])
    assert record.value == original and record.key == cid.encode()
    assert list(record.headers) == headers

    # A forced second replay is a duplicate for the inbox: still processed once.
    forced = await run_cli(harness, "dlq", "replay", str(row["id"]), "--force")
    assert forced.code == 0, forced.err

    async def replayed_twice() -> bool:
        dup = metric_samples(await scrape(worker.http.port), "campaign_worker_messages")
        return any(
            s.labels.get("outcome") == "duplicate" and s.value >= 1
            for s in dup
            if s.name.endswith("_total")
        )

    await eventually(replayed_twice)
    assert len(harness.down.of_type("campaign.status_changed", cid)) == 1
    rows = await harness.fetch("SELECT version FROM campaigns WHERE id=$1", uuid.UUID(cid))
    assert [r["version"] for r in rows] == [1]
    [stamp] = await harness.fetch("SELECT replayed_at FROM dead_letters")
    assert stamp["replayed_at"] is not None
    assert len(await harness.fetch("SELECT 1 FROM dead_letters")) == 1


async def _read_record(h: Harness, topic: str, partition: int, offset: int) -> Any:
    consumer = AIOKafkaConsumer(bootstrap_servers=h.kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(f"{h.prefix}{topic}", partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        return await asyncio.wait_for(consumer.getone(tp), 10)
    finally:
        await consumer.stop()


async def test_metrics_scrape_passes_promtool_and_has_every_metric_the_alerts_use(
    harness: Harness,
) -> None:
    worker = await harness.start_worker(lag_interval_s=0.3)
    await seed_product(harness)
    await harness.up.send_raw(COMMANDS, b"garbage", key="k")
    await _produce(harness, 3)  # refusals
    await harness.down.wait_for(lambda r: r.type == "command.rejected", count=3)
    await harness.down.wait_for(lambda r: r.topic == "campaign.dlq")

    async def lag_sampled() -> bool:
        text = await scrape(worker.http.port)
        return bool(metric_samples(text, "campaign_worker_consumer_lag_seconds"))

    await eventually(lag_sampled)
    text = await scrape(worker.http.port)

    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    exported = {
        (name.removesuffix("_total") if kind == "counter" else name) + suffix
        for name, kind in families.items()
        for suffix in suffixes.get(kind, [""])
    }
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    used = set().union(*(metric_names(line) for line in rules.splitlines() if "expr:" in line))
    assert used and used <= exported, sorted(used - exported)

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_every_outgoing_message_of_a_campaign_walk_matches_the_schemas(
    harness: Harness,
) -> None:
    """Creatives, review, update, duplicate, cancel, a refusal and a dead letter: every message
    the worker publishes validates against schemas/outbound and documents all its fields."""
    await harness.start_worker()
    await seed_product(harness)
    drv = Driver(harness)
    cid = await drv.create()
    content = {
        "file_url": "https://cdn.example.com/b.png",
        "destination_url": "https://shop.example.com/sale",
        "text": "50% off",
    }
    for creative in ("c-1", "c-2"):
        await drv.do(
            "creative.create",
            cid,
            {
                "creative_id": creative,
                "name": creative,
                "ad_unit_id": "unit-728x90",
                "content": content,
            },
        )
    await drv.do("review.creative_approved", cid, {"creative_id": "c-1"}, as_="publisher")
    await drv.do("creative.update", cid, {"creative_id": "c-1", "name": "renamed"})
    await drv.do("creative.delete", cid, {"creative_id": "c-2"})
    await drv.do("campaign.update", cid, {"title": "Summer sale"})
    await drv.do("campaign.submit", cid)
    await drv.do("review.campaign_approved", cid, as_="publisher")
    dup = await drv.send("campaign.duplicate", cid, {"new_campaign_id": str(uuid.uuid4())})
    await harness.down.wait_for(lambda r: r.event.get("causationid") == dup["id"], count=2)
    await drv.do("campaign.cancel", cid, {"reason": "changed plans"}, as_="publisher")
    await drv.do("campaign.pause", str(uuid.uuid4()))  # refused: no such campaign
    await harness.up.send_raw(COMMANDS, b"not json", key=cid)
    await harness.down.wait_for(lambda r: r.topic == "campaign.dlq")
    await asyncio.sleep(0.5)  # let trailing messages (serving, notifications) arrive

    seen = {r.type for r in harness.down.received}
    for r in harness.down.received:
        validate_outgoing(r.event)
        assert r.topic == messages_out.OUTBOUND_TYPES[r.type].topic, r.type
    assert {
        "campaign.status_changed",
        "campaign.updated",
        "campaign.duplicated",
        "creative.status_changed",
        "creative.deleted",
        "command.rejected",
        "dlq.dead_lettered",
    } <= seen, seen
