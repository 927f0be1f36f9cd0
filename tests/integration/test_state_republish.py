"""`state republish` on a real Postgres: bounded batches through the outbox, resumable after
an interruption, every campaign exactly once per completed run."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker.adapters.db.republish import Progress, republish_all, republish_campaigns
from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.config import Settings
from campaign_worker.domain.model import Status
from tests.unit.domain_builders import campaign_in

pytestmark = pytest.mark.integration

NOW = datetime(2030, 1, 5, tzinfo=UTC)


class Interrupted(Exception):
    pass


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    e = create_async_engine(Settings(database_url=database_url).sqlalchemy_url)  # a fresh db
    yield e
    await e.dispose()


async def states(database_url: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT value FROM outbox WHERE topic = 'campaign.state' ORDER BY id"
        )
    finally:
        await conn.close()
    return [json.loads(r["value"]) for r in rows]


async def seed(engine: AsyncEngine, n: int) -> list[str]:
    campaigns = [
        campaign_in(Status.LIVE if i % 2 else Status.BOOKED, version=3 + i % 4) for i in range(n)
    ]
    async with SqlUnitOfWork(engine) as uow:
        await uow.save_campaigns(campaigns, NOW)
        await uow.commit()
    return sorted(str(c.id) for c in campaigns)


async def test_an_interrupted_republish_resumes_after_its_last_batch(
    engine: AsyncEngine, database_url: str
) -> None:
    ids = await seed(engine, 230)
    seen: list[Progress] = []

    def stop_after_two_batches(p: Progress) -> None:
        seen.append(p)
        if len(seen) == 3:  # the start, then two committed batches
            raise Interrupted

    with pytest.raises(Interrupted):
        await republish_all(engine, batch_size=50, on_progress=stop_after_two_batches)
    assert [s["subject"] for s in await states(database_url)] == ids[:100]

    progress: list[Progress] = []
    result = await republish_all(engine, batch_size=50, on_progress=progress.append)
    assert result.resumed_from is not None and str(result.resumed_from) == ids[99]
    assert result.written == 230
    assert (progress[0].written, progress[0].total) == (100, 230)
    assert progress[-1].written == progress[-1].total == 230
    records = await states(database_url)
    assert [s["subject"] for s in records] == ids  # each campaign once, in id order
    for record in records:
        assert record["type"] == "campaign.state"
        data = record["data"]
        assert isinstance(data, dict)
        assert data["updated_at"] == NOW.isoformat().replace("+00:00", "Z")
        assert data["status"] in ("LIVE", "BOOKED")
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM state_republish") == 0  # done
    finally:
        await conn.close()

    again = await republish_all(engine, batch_size=500)  # a completed run starts over
    assert again.resumed_from is None and again.written == 230


async def test_restart_ignores_an_interrupted_run_and_chosen_campaigns_go_alone(
    engine: AsyncEngine, database_url: str
) -> None:
    ids = await seed(engine, 40)

    def interrupt(p: Progress) -> None:
        if p.written:
            raise Interrupted

    with pytest.raises(Interrupted):
        await republish_all(engine, batch_size=10, on_progress=interrupt)
    result = await republish_all(engine, batch_size=10, restart=True)
    assert result.resumed_from is None and result.written == 40

    missing = "00000000-0000-4000-8000-000000000000"
    chosen = await republish_campaigns(engine, [uuid.UUID(i) for i in (ids[3], ids[7], missing)])
    assert chosen.written == 2 and [str(m) for m in chosen.missing] == [missing]
