"""The lag status an operator can trust, on real Kafka with the worker's own group: the four
situations (caught up, stopped, stuck with members, falling behind) and a steady drain that
must never be called STALL; STOP within 10 s of the last member leaving."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from campaign_worker import topics
from campaign_worker.adapters.kafka_client import client_kwargs
from campaign_worker.adapters.lag import Status, measure
from tests.conftest import Harness
from tests.e2e.test_operators import COMMANDS, _produce, _topics
from tests.support.ops import member_of_group, run_cli

pytestmark = pytest.mark.e2e


def _statuses(report: dict[str, Any]) -> set[str]:
    return {p["status"] for p in report["partitions"]} | {report["status"]}


async def _lag(h: Harness, *args: str) -> tuple[int, dict[str, Any]]:
    result = await run_cli(h, "lag", "--json", *args, timeout=90)
    assert result.err == "", result.err
    report: dict[str, Any] = json.loads(result.out)
    return result.code, report


async def test_stuck_with_a_member_is_stall_and_stop_follows_the_last_member_at_once(
    harness: Harness,
) -> None:
    await _topics(harness)
    await _produce(harness, 60)
    member = await member_of_group(harness, COMMANDS)  # in the group, commits nothing
    try:
        started = time.monotonic()
        code, report = await _lag(harness, "--stall-after", "3")
        physical = f"{harness.prefix}{COMMANDS}"
        waiting = [p for p in report["partitions"] if p["topic"] == physical and p["lag"]]
        assert waiting and all(p["status"] == "STALL" for p in waiting), report
        assert all(p["unmoved_s"] >= 3 for p in waiting)
        assert code == 1 and report["status"] == "STALL" and report["members"] == 1
        # the short default look watched a possibly stuck partition until it could tell
        assert report["observed_s"] >= 3 and time.monotonic() - started < 30
    finally:
        await member.stop()  # the last member leaves
    left = time.monotonic()
    code, report = await _lag(harness, "--samples", "1")
    assert time.monotonic() - left < 10
    assert code == 1 and report["status"] == "STOP" and report["members"] == 0
    assert {p["status"] for p in report["partitions"] if p["lag"]} == {"STOP"}


async def test_offsets_moving_slower_than_the_log_grows_is_warn(harness: Harness) -> None:
    await _topics(harness)
    member = await member_of_group(harness, COMMANDS)
    physical = f"{harness.prefix}{COMMANDS}"
    tp = TopicPartition(physical, 0)
    producer = AIOKafkaProducer(bootstrap_servers=harness.kafka)
    await producer.start()
    stop = asyncio.Event()

    async def fall_behind() -> None:
        committed = 0
        while not stop.is_set():
            for _ in range(5):
                await producer.send_and_wait(physical, b"{}", partition=0)
            committed += 1
            await member.commit({tp: committed})
            await asyncio.sleep(0.2)

    task = asyncio.create_task(fall_behind())
    try:
        await asyncio.sleep(1.0)
        settings = harness.settings()
        report = await measure(
            client_kwargs(settings),
            settings.group_id,
            [settings.topic(t) for t in topics.INBOUND],
            samples=4,
            interval_s=0.7,
        )
        [p0] = [p for p in report.partitions if (p.sample.topic, p.sample.partition) == tp]
        assert p0.status is Status.WARN, report.to_json()
        assert report.status is Status.WARN and report.members == 1
    finally:
        stop.set()
        await task
        await producer.stop()
        await member.stop()


async def test_a_steady_drain_is_never_stall_and_caught_up_is_ok(harness: Harness) -> None:
    await _topics(harness)
    await _produce(harness, 4000)
    # one record per batch: the drain lasts long enough for several looks (the worker drained
    # 1,500 records in batches of 2 within one look once its writes were batched statements)
    await harness.start_worker(batch_max_records=1, lag_interval_s=1.0)
    looks: list[dict[str, Any]] = []
    while True:
        code, report = await _lag(harness)  # the default look: 3 samples 2 s apart
        looks.append(report)
        assert not _statuses(report) & {"STALL", "STOP", "ERR", "REWIND"}, report
        if report["total_lag"] == 0:
            break
        assert report["members"] == 1
    during = [r for r in looks if r["total_lag"] > 0]
    assert len(during) >= 2, f"the drain ended after {len(during)} look(s): not a test"
    code, report = await _lag(harness, "--samples", "1")
    assert code == 0 and report["status"] == "OK" and report["total_lag"] == 0
