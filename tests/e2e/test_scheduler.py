"""Start and end times on real Kafka and Postgres (issue 4): on time, once, on several
replicas, and after downtime."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Harness
from tests.support.contract import Driver, create_data, iso
from tests.support.processes import WorkerProcess
from tests.support.util import eventually, seed_product

pytestmark = pytest.mark.e2e


async def book(drv: Driver, start: datetime, end: datetime, **extra: object) -> str:
    cid = await drv.create(start_at=iso(start), end_at=iso(end), **extra)
    await drv.do("campaign.submit", cid)
    got = await drv.do("review.campaign_approved", cid, as_="publisher")
    assert got.data["to"] == "BOOKED", got.data
    return cid


def status_events(h: Harness, cid: str) -> list[dict[str, object]]:
    return [r.data for r in h.down.of_type("campaign.status_changed", cid)]


async def test_start_in_3s_and_end_in_8s_go_live_then_closed_on_time(harness: Harness) -> None:
    await harness.start_worker(scheduler_tick_s=0.2)
    await seed_product(harness)
    drv = Driver(harness)
    now = datetime.now(UTC)
    start, end = now + timedelta(seconds=3), now + timedelta(seconds=8)
    cid = await book(drv, start, end)
    await harness.down.wait_for(
        lambda r: (
            r.type == "campaign.status_changed"
            and r.event.get("subject") == cid
            and r.data["to"] == "CLOSED"
        ),
        timeout=20,
    )
    live, closed = [e for e in status_events(harness, cid) if e["to"] in ("LIVE", "CLOSED")]
    assert (live["from"], live["to"]) == ("BOOKED", "LIVE")
    assert live["display_status"] == "Ad groups not running"  # LIVE without a creative
    assert (closed["from"], closed["to"]) == ("LIVE", "CLOSED")
    assert live["due_at"] == iso(start) and closed["due_at"] == iso(end)
    assert 0 <= float(live["lateness_seconds"]) < 2  # type: ignore[arg-type]
    assert 0 <= float(closed["lateness_seconds"]) < 2  # type: ignore[arg-type]
    assert live["actor"] == {"role": "system", "id": "scheduler"}
    rows = await harness.fetch(
        "SELECT to_status, details->>'lateness_seconds' AS late FROM campaign_history"
        " WHERE campaign_id=$1 AND trigger IN ('start', 'end') ORDER BY version",
        uuid.UUID(cid),
    )
    assert [r["to_status"] for r in rows] == ["LIVE", "CLOSED"]
    assert all(float(r["late"]) < 2 for r in rows)
    worker = harness.workers[0]
    assert worker.metrics.schedule_lateness.labels("start")._sum.get() < 2


async def test_moving_the_start_moves_the_trigger(harness: Harness) -> None:
    await harness.start_worker(scheduler_tick_s=0.2)
    await seed_product(harness)
    drv = Driver(harness)
    now = datetime.now(UTC)
    cid = await book(drv, now + timedelta(hours=1), now + timedelta(hours=2))
    moved = await drv.do(
        "campaign.update",
        cid,
        {"start_at": iso(datetime.now(UTC) + timedelta(seconds=2))},
        as_="publisher",
    )
    assert moved.type == "campaign.updated"
    await harness.down.wait_for(
        lambda r: (
            r.type == "campaign.status_changed"
            and r.event.get("subject") == cid
            and r.data["to"] == "LIVE"
        ),
        timeout=15,
    )


async def test_catch_up_after_downtime_applies_missed_starts_and_ends_in_order(
    harness: Harness,
) -> None:
    """Stop the worker, let start and end pass, start it again."""
    worker = await harness.start_worker(scheduler_tick_s=0.2)
    await seed_product(harness)
    drv = Driver(harness)
    now = datetime.now(UTC)
    # A: BOOKED, start and end both pass while down -> closes directly (T7), no LIVE
    a = await book(drv, now + timedelta(seconds=3), now + timedelta(seconds=5))
    # B: goes LIVE while running; its end passes while down -> CLOSED (T6)
    b = await book(drv, now + timedelta(seconds=1), now + timedelta(seconds=6))
    # C: LIVE, then PAUSED; closes at its end while down
    c = await book(drv, now + timedelta(seconds=1), now + timedelta(seconds=6))
    # D: only its start passes while down -> LIVE late, lateness recorded
    d = await book(drv, now + timedelta(seconds=4), now + timedelta(hours=1))
    for cid in (b, c):
        await harness.down.wait_for(
            lambda r, cid=cid: (
                r.event.get("subject") == cid
                and r.type == "campaign.status_changed"
                and r.data["to"] == "LIVE"
            ),
            timeout=15,
        )
    assert (await drv.do("campaign.pause", c)).data["to"] == "PAUSED"
    await harness.stop_worker(worker)
    down_until = now + timedelta(seconds=8)
    await asyncio.sleep(max(0.0, (down_until - datetime.now(UTC)).total_seconds()))

    await harness.start_worker(scheduler_tick_s=0.2)
    for cid, frm in ((a, "BOOKED"), (b, "LIVE"), (c, "PAUSED")):
        [closed] = await harness.down.wait_for(
            lambda r, cid=cid: (
                r.event.get("subject") == cid
                and r.type == "campaign.status_changed"
                and r.data["to"] == "CLOSED"
            ),
            timeout=15,
        )
        assert closed.data["from"] == frm
        assert float(closed.data["lateness_seconds"]) >= 1.5  # applied late, and says so
    [late_live] = await harness.down.wait_for(
        lambda r: (
            r.event.get("subject") == d
            and r.type == "campaign.status_changed"
            and r.data["to"] == "LIVE"
        ),
        timeout=15,
    )
    assert float(late_live.data["lateness_seconds"]) >= 2
    # A never went live: no LIVE event, no "started" transition in its history
    assert [e["to"] for e in status_events(harness, a)] == [
        "DRAFT",
        "SUBMITTED",
        "BOOKED",
        "CLOSED",
    ]
    rows = await harness.fetch(
        "SELECT trigger FROM campaign_history WHERE campaign_id=$1 AND to_status='CLOSED'",
        uuid.UUID(a),
    )
    assert [r["trigger"] for r in rows] == ["end"]


async def test_three_worker_processes_transition_2000_due_campaigns_exactly_once(
    harness: Harness,
) -> None:
    first = WorkerProcess(harness, CAMPAIGN_WORKER_SCHEDULER_TICK_S="0.2")
    workers = [first] + [
        WorkerProcess(harness, CAMPAIGN_WORKER_SCHEDULER_TICK_S="0.2") for _ in range(2)
    ]
    try:
        for w in workers:
            await w.start()
        await harness.down.start()
        harness._down_started = True
        await seed_product(harness)
        drv = Driver(harness)
        start = datetime.now(UTC) + timedelta(seconds=40)
        end = start + timedelta(days=1)
        ids = [str(uuid.uuid4()) for _ in range(2000)]
        # each phase waits for the previous one: reviews travel on their own topic, and
        # Kafka orders nothing across topics
        for type_, as_, data, status in (
            (
                "campaign.create",
                "advertiser",
                create_data(start_at=iso(start), end_at=iso(end)),
                "DRAFT",
            ),
            ("campaign.submit", "advertiser", None, "SUBMITTED"),
            ("review.campaign_approved", "publisher", None, "BOOKED"),
        ):
            futures = []
            for cid in ids:
                topic, event = drv.build(type_, cid, data, as_=as_)
                futures.append(await harness.up.send_nowait(topic, event))
            await asyncio.gather(*futures)

            async def reached(status: str = status) -> bool:
                rows = await harness.fetch(
                    "SELECT count(*) AS n FROM campaigns WHERE status=$1", status
                )
                return rows[0]["n"] == 2000

            try:
                await eventually(reached, timeout=60, interval=0.5)
            except AssertionError:
                rows = await harness.fetch("SELECT status, count(*) n FROM campaigns GROUP BY 1")
                raise AssertionError(f"{[tuple(r) for r in rows]}\n{workers[0].tail()}") from None
        assert datetime.now(UTC) < start, "setup took longer than the start delay"

        subjects = set(ids)
        await harness.down.wait_for(
            lambda r: (
                r.type == "campaign.status_changed"
                and r.data.get("to") == "LIVE"
                and r.event.get("subject") in subjects
            ),
            count=2000,
            timeout=90,
        )
        await asyncio.sleep(1.5)  # would-be duplicates have time to show up
        live = [
            r
            for r in harness.down.of_type("campaign.status_changed")
            if r.data.get("to") == "LIVE" and r.event.get("subject") in subjects
        ]
        assert len(live) == 2000
        assert len({r.event["subject"] for r in live}) == 2000
        rows = await harness.fetch(
            "SELECT count(*) AS n, count(DISTINCT campaign_id) AS d FROM campaign_history"
            " WHERE to_status='LIVE'"
        )
        assert (rows[0]["n"], rows[0]["d"]) == (2000, 2000)
        late = sorted(float(r.data["lateness_seconds"]) for r in live)
        assert late[len(late) // 2] < 2, late[-10:]  # the median is on time
    finally:
        codes = [await w.stop() for w in workers]
    assert codes == [0, 0, 0], [w.tail() for w in workers]
