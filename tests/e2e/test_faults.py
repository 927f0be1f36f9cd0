"""The project's own fault tests (issue 15, item 7): under load, kill -9 a worker in the
middle of its batches, restart the broker, restart Postgres; then count commands sent,
transitions applied and events published (distinct ids). Nothing may be lost (every
command processed, every effect published) and nothing doubled (no command applied twice,
no two distinct events for one cause). Kafka and Postgres here are servers of this module,
so restarting them disturbs no other test. Each test prints its figures (pytest -s)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from campaign_worker.dev import services as devservices
from tests.e2e.test_startup_order import Spawned
from tests.support.contract import create_event, product_event
from tests.support.kafka_io import Upstream, cloudevent
from tests.support.servers import LocalKafka, local_kafka
from tests.support.util import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(600)]

CAMPAIGNS = 300  # x 3 commands (create, submit, cancel): 900 commands per test
OUTBOUND = ("campaign.events", "campaign.notifications", "campaign.settlements", "campaign.dlq")


@dataclass
class Rig:
    kafka: LocalKafka
    data_dir: Path
    port: int
    handle: devservices.PostgresHandle

    @property
    def admin_url(self) -> str:
        return self.handle.url

    def restart_postgres(self, down_s: float) -> None:
        self.handle.stop()
        time.sleep(down_s)
        self.handle = devservices.start_embedded_postgres(self.data_dir, self.port)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    data_dir = Path(tempfile.mkdtemp(prefix="cw-faults-pg-"))
    port = devservices.free_port()
    try:
        with local_kafka() as kafka:
            kafka.start()
            handle = devservices.start_embedded_postgres(data_dir, port)
            rig = Rig(kafka, data_dir, port, handle)
            try:
                yield rig
            finally:
                rig.handle.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Run:
    rig: Rig
    database_url: str
    prefix: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:8]}.")
    sent: list[dict[str, Any]] = field(default_factory=list)
    workers: list[Spawned] = field(default_factory=list)

    def worker(self) -> Spawned:
        w = Spawned(
            self.database_url,
            self.rig.kafka.bootstrap,
            self.prefix,
            CAMPAIGN_WORKER_BATCH_MAX_RECORDS="50",
            CAMPAIGN_WORKER_NOTIFIER="false",
            CAMPAIGN_WORKER_RETRY_BACKOFF_MAX_S="1",
        )
        self.workers.append(w)
        return w

    async def fetchval(self, query: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    async def processed(self) -> int:
        ids = [e["id"] for e in self.sent]
        try:
            return int(
                await self.fetchval("SELECT count(*) FROM inbox WHERE message_id = ANY($1)", ids)
            )
        except (OSError, asyncpg.PostgresError):
            return -1  # Postgres is down right now

    async def send(self, campaigns: list[str]) -> None:
        up = Upstream(self.rig.kafka.bootstrap, self.prefix)
        await up.start()
        try:
            futures = []
            for cid in campaigns:
                for event in (
                    create_event(cid),
                    cloudevent("campaign.submit", cid, {}),
                    cloudevent("campaign.cancel", cid, {"reason": "fault test"}),
                ):
                    self.sent.append(event)
                    futures.append(await up.send_nowait("campaign.commands", event))
            await asyncio.gather(*futures)
        finally:
            await up.stop()

    async def seed(self) -> None:
        up = Upstream(self.rig.kafka.bootstrap, self.prefix)
        await up.start()
        try:
            await up.send("campaign.catalog", product_event())
        finally:
            await up.stop()

        async def stored() -> bool:
            return bool(await self.fetchval("SELECT count(*) FROM ad_products"))

        await eventually(stored, timeout=60, interval=0.3)

    async def settle(self, timeout: float = 240) -> None:
        """Until every command is in the inbox and the outbox is empty."""

        async def done() -> bool:
            for w in self.workers:
                if w.proc is not None and w.proc.returncode is None:
                    break
            else:
                raise AssertionError("no worker is running")
            try:
                backlog = await self.fetchval("SELECT count(*) FROM outbox")
            except (OSError, asyncpg.PostgresError):
                return False
            return await self.processed() == len(self.sent) and backlog == 0

        try:
            await eventually(done, timeout=timeout, interval=0.5)
        except AssertionError as error:
            logs = "\n---\n".join(w.text[-3000:] for w in self.workers)
            raise AssertionError(f"{error}; processed {await self.processed()}\n{logs}") from None

    async def published(self, topics: tuple[str, ...] = OUTBOUND) -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            *[f"{self.prefix}{t}" for t in topics],
            bootstrap_servers=self.rig.kafka.bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        events: list[dict[str, Any]] = []
        try:
            idle = 0
            while idle < 3:
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                records = [r for rs in batch.values() for r in rs]
                idle = 0 if records else idle + 1
                events.extend(json.loads(r.value) for r in records)
        finally:
            await consumer.stop()
        return events

    async def count(self, what: str, started: float) -> dict[str, Any]:
        """The figures, asserting lost = 0 and doubled = 0."""
        elapsed = time.monotonic() - started
        sent_ids = {e["id"] for e in self.sent}
        subjects = {e["subject"] for e in self.sent}
        conn = await asyncpg.connect(self.database_url)
        try:
            inbox = {
                r["message_id"]
                for r in await conn.fetch(
                    "SELECT message_id FROM inbox WHERE message_id = ANY($1)", list(sent_ids)
                )
            }
            history = await conn.fetch(
                "SELECT campaign_id::text AS cid, kind, to_status, message_id"
                " FROM campaign_history WHERE campaign_id = ANY($1::uuid[])",
                list(subjects),
            )
            rows = await conn.fetch(
                "SELECT id::text AS cid, status, version FROM campaigns WHERE id = ANY($1::uuid[])",
                list(subjects),
            )
        finally:
            await conn.close()
        statuses = Counter(r["status"] for r in rows)
        stored = {r["cid"]: (r["status"], r["version"]) for r in rows}
        # the state topic: the latest record per campaign is what the database holds, and no
        # record is of a version the database never reached
        latest: dict[str, tuple[str, int]] = {}
        ahead = 0
        for e in await self.published(("campaign.state",)):
            cid, version = e["subject"], e["data"]["version"]
            if cid not in stored:
                continue
            ahead += version > stored[cid][1]
            if cid not in latest or version >= latest[cid][1]:
                latest[cid] = (e["data"]["status"], version)
        events = [e for e in await self.published() if e.get("subject") in subjects]
        distinct = {e["id"]: e for e in events}
        causes = Counter((e.get("causationid"), e["type"]) for e in distinct.values())
        applied = Counter((r["message_id"], r["kind"], r["to_status"]) for r in history)
        figures = {
            "fault": what,
            "commands_sent": len(sent_ids),
            "commands_processed": len(inbox),
            "transitions_applied": sum(1 for r in history if r["kind"] == "status_changed"),
            "campaigns_created": sum(1 for r in history if r["kind"] == "created"),
            "events_published_distinct": len(distinct),
            "events_on_the_wire": len(events),
            "lost_commands": len(sent_ids - inbox),
            "commands_without_outcome_event": len(
                sent_ids - {e.get("causationid") for e in distinct.values()}
            ),
            "doubled_applications": sum(n - 1 for n in applied.values() if n > 1),
            "doubled_events": sum(n - 1 for n in causes.values() if n > 1),
            "final_cancelled": statuses.get("CANCELLED", 0),
            "state_records_differing_from_db": sum(
                1 for cid in stored if latest.get(cid) != stored[cid]
            )
            + ahead,
            "seconds": round(elapsed, 1),
        }
        print(f"\nFAULT FIGURES {json.dumps(figures)}", flush=True)
        assert figures["lost_commands"] == 0, figures
        assert figures["commands_without_outcome_event"] == 0, figures
        assert figures["doubled_applications"] == 0, figures
        assert figures["doubled_events"] == 0, figures
        assert figures["campaigns_created"] == CAMPAIGNS, figures
        assert figures["transitions_applied"] == 2 * CAMPAIGNS, figures  # T1, T10
        assert figures["final_cancelled"] == CAMPAIGNS, figures
        assert figures["state_records_differing_from_db"] == 0, figures
        return figures


@pytest.fixture
async def run(rig: Rig) -> AsyncIterator[Run]:
    name = f"cw_fault_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(rig.admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    r = Run(rig, f"{rig.admin_url.rpartition('/')[0]}/{name}")
    try:
        yield r
    finally:
        for w in r.workers:
            w.kill()
            if w.proc is not None:
                await w.proc.wait()
        conn = await asyncpg.connect(rig.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def _campaigns() -> list[str]:
    return [str(uuid.uuid4()) for _ in range(CAMPAIGNS)]


async def _wait_processed(run: Run, at_least: int, timeout: float = 120) -> None:
    async def enough() -> bool:
        return await run.processed() >= at_least

    await eventually(enough, timeout=timeout, interval=0.05)


async def test_kill_9_of_a_worker_mid_batch(run: Run) -> None:
    first, second = run.worker(), run.worker()
    await first.start()  # migrates
    await first.wait_ready()
    await second.start("--no-migrate")
    await second.wait_ready()
    await run.seed()
    started = time.monotonic()
    campaigns = _campaigns()
    sending = asyncio.create_task(run.send(campaigns))
    await _wait_processed(run, 150)
    assert first.proc is not None
    first.proc.kill()  # SIGKILL: no drain, no commit of the batch in flight
    await first.proc.wait()
    killed_at = await run.processed()
    await sending
    replacement = run.worker()
    await replacement.start("--no-migrate")
    await run.settle()
    figures = await run.count("kill -9 of one of two workers", started)
    assert 0 < killed_at < figures["commands_sent"], killed_at


async def test_broker_restart_under_load(run: Run) -> None:
    worker = run.worker()
    await worker.start()
    await worker.wait_ready()
    await run.seed()
    started = time.monotonic()
    campaigns = _campaigns()
    await run.send(campaigns[: CAMPAIGNS // 2])
    await _wait_processed(run, 150)
    await asyncio.to_thread(run.rig.kafka.restart)
    await run.send(campaigns[CAMPAIGNS // 2 :])
    await run.settle()
    worker.alive()
    await run.count("broker restart", started)
    assert await worker.stop() == 0


async def test_postgres_restart_under_load(run: Run) -> None:
    worker = run.worker()
    await worker.start()
    await worker.wait_ready()
    await run.seed()
    started = time.monotonic()
    sending = asyncio.create_task(run.send(_campaigns()))
    await _wait_processed(run, 150)
    await asyncio.to_thread(run.rig.restart_postgres, 3.0)
    await sending
    await run.settle()
    worker.alive()
    await run.count("Postgres restart (3 s down)", started)
    assert await worker.stop() == 0
