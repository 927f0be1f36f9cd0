"""The SQL side of the money rules of issue 13 on real Postgres: migration 0006 matches the
table definitions, the settlement claim is bounded, earliest first and skips campaigns another
transaction holds, and the relevance peers of several products come from one query."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker.adapters.db.tables import metadata
from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.config import Settings
from campaign_worker.domain.ledger import Ledger
from campaign_worker.domain.model import Status
from campaign_worker.domain.settlement import Account, compute_statement
from campaign_worker.service.unit_of_work import DueSettlement
from tests.unit.domain_builders import campaign_in

pytestmark = pytest.mark.integration

NOW = datetime(2030, 2, 1, 12, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> Any:
    e = create_async_engine(Settings(database_url=database_url).sqlalchemy_url)
    yield e
    await e.dispose()


async def seed(
    engine: AsyncEngine,
    product: str,
    *,
    settle_at: datetime | None = None,
    live: tuple[int, int] = (0, 0),
    settled: bool = False,
) -> uuid.UUID:
    campaign = campaign_in(Status.CLOSED, id=uuid.uuid4(), ad_product_id=product)
    account = replace(
        Account.open(campaign),
        settle_at=settle_at,
        live_impressions=live[0],
        live_clicks=live[1],
    )
    if settled:  # a statement was issued: nothing pending whatever settle_at says
        statement = compute_statement(campaign, Ledger("EUR"), Decimal("0.10"))
        account = replace(account, statement=statement)
    async with SqlUnitOfWork(engine) as uow:
        await uow.save_campaigns([campaign], NOW)
        await uow.save_accounts([account], NOW)
        await uow.commit()
    return campaign.id


async def test_migration_0006_matches_the_account_table(engine: AsyncEngine) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert [c for c in changes if "campaign_accounts" in repr(c)] == []


async def test_settlements_are_claimed_when_due_earliest_first_and_bounded(
    engine: AsyncEngine,
) -> None:
    late = await seed(engine, "p", settle_at=NOW - timedelta(minutes=1))
    early = await seed(engine, "p", settle_at=NOW - timedelta(hours=1))
    await seed(engine, "p", settle_at=NOW + timedelta(seconds=1))  # not due
    await seed(engine, "p", settle_at=NOW - timedelta(hours=2), settled=True)  # already settled
    await seed(engine, "p")  # nothing pending
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.claim_settlements(NOW, 10) == [
            DueSettlement(early, NOW - timedelta(hours=1)),
            DueSettlement(late, NOW - timedelta(minutes=1)),
        ]
        assert await uow.claim_settlements(NOW, 1) == [
            DueSettlement(early, NOW - timedelta(hours=1))
        ]


async def test_a_campaign_locked_by_another_transaction_is_skipped(engine: AsyncEngine) -> None:
    first = await seed(engine, "p", settle_at=NOW - timedelta(hours=1))
    second = await seed(engine, "p", settle_at=NOW - timedelta(minutes=1))
    async with SqlUnitOfWork(engine) as batch:
        assert set(await batch.lock_campaigns([first])) == {first}  # a message batch holds it
        async with SqlUnitOfWork(engine) as tick:
            claimed = await tick.claim_settlements(NOW, 10)
            assert [d.campaign_id for d in claimed] == [second]


async def test_relevance_peers_of_several_products_come_from_one_query(
    engine: AsyncEngine,
) -> None:
    a1 = await seed(engine, "pa", live=(20_000, 200))
    a2 = await seed(engine, "pa", live=(10_000, 5))
    await seed(engine, "pa", live=(9_999, 500))  # too few LIVE impressions
    b1 = await seed(engine, "pb", live=(50_000, 100))
    await seed(engine, "pc", live=(50_000, 100))  # another product
    statements: list[str] = []

    def count(record: Any) -> None:
        statements.append(record.query)

    async with SqlUnitOfWork(engine) as uow:
        uow.pg.add_query_logger(count)  # the unit of work's statements run on asyncpg
        try:
            peers = await uow.relevance_peers(["pa", "pb", "pd"], 10_000)
            await asyncio.sleep(0.05)  # asyncpg hands logged queries over with call_soon
        finally:
            uow.pg.remove_query_logger(count)
        assert len(statements) == 1, statements
    assert peers == {
        "pa": {a1: (20_000, 200), a2: (10_000, 5)},
        "pb": {b1: (50_000, 100)},
        "pd": {},
    }
