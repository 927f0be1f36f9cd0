"""What only the SQL unit of work has to get right (the shared behaviour is in
tests/contract): its statements match the migrated schema, each is prepared once per
connection whatever the batch size, and a connection lost mid-batch is a transient error
that the pool does not hand out again."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker.adapters.db.errors import is_transient
from campaign_worker.adapters.db.uow import SAVE_CAMPAIGNS, STATEMENTS, SqlUnitOfWork, _dumps
from campaign_worker.config import Settings
from campaign_worker.domain.model import Status
from tests.unit.domain_builders import campaign_in

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    e = create_async_engine(
        Settings(database_url=database_url).sqlalchemy_url, pool_size=1, max_overflow=0
    )
    yield e
    await e.dispose()


async def test_every_statement_prepares_against_the_migrated_schema(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for name, sql in STATEMENTS.items():
            statement = await conn.prepare(sql)
            assert statement.get_parameters(), f"{name} takes no parameters"
    finally:
        await conn.close()


async def test_a_statement_is_prepared_once_whatever_the_batch_size(engine: AsyncEngine) -> None:
    for size in (1, 7, 300, 2):
        async with SqlUnitOfWork(engine) as uow:
            await uow.save_campaigns([campaign_in(Status.DRAFT) for _ in range(size)], NOW)
            await uow.commit()
    async with SqlUnitOfWork(engine) as uow:  # the same (only) pooled connection
        prepared = await uow.pg.fetchval(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", SAVE_CAMPAIGNS
        )
    assert prepared == 1


async def test_a_connection_lost_mid_batch_is_transient_and_not_reused(
    engine: AsyncEngine, database_url: str
) -> None:
    c = campaign_in(Status.DRAFT)
    with pytest.raises(Exception) as raised:  # which one: asserted to be transient below
        async with SqlUnitOfWork(engine) as uow:
            pid = await uow.pg.fetchval("SELECT pg_backend_pid()")
            admin = await asyncpg.connect(database_url)
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            await uow.save_campaigns([c], NOW)
            await uow.commit()
    assert is_transient(raised.value), repr(raised.value)
    # the pool (of one) hands out a working connection, and nothing of the batch was kept
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.lock_campaigns([c.id]) == {}
        await uow.save_campaigns([c], NOW)
        await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        assert list(await uow.lock_campaigns([c.id])) == [c.id]


async def test_an_error_inside_leaves_the_connection_usable(engine: AsyncEngine) -> None:
    c = campaign_in(Status.DRAFT)
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        async with SqlUnitOfWork(engine) as uow:
            await uow.save_campaigns([c], NOW)
            await uow.pg.execute(
                "INSERT INTO statements VALUES ('s', $1, '{}', now()), ('t', $1, '{}', now())",
                uuid.uuid4(),
            )
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.lock_campaigns([c.id]) == {}
        assert not uow.pg.is_closed()


@pytest.mark.parametrize(
    "value",
    [
        {"fields": ["title", "budget"], "reason": None, "n": 1, "x": 2.5, "ok": True},
        {"template_data": {"title": 'Hiver – «soldes» "冬"\n', "nested": [[], {}]}},
        [],
        "text",
    ],
)
def test_json_text_is_what_json_dumps_writes(value: object) -> None:
    assert _dumps(value) == json.dumps(value, separators=(",", ":"))


def test_json_text_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        _dumps({"at": datetime.now(UTC)})


async def test_extras_of_a_few_campaigns_in_one_statement_are_those_of_three(
    engine: AsyncEngine,
) -> None:
    """Up to EXTRAS_IN_ONE_UP_TO campaigns, creatives, holds and accounts come from one
    statement, beyond it from three: both give the same extras."""
    from dataclasses import replace
    from datetime import timedelta

    from campaign_worker.adapters.db.uow import EXTRAS_IN_ONE_UP_TO
    from campaign_worker.domain.serving import Hold
    from campaign_worker.domain.settlement import Account
    from tests.contract.test_unit_of_work import creative

    campaigns = [campaign_in(Status.LIVE) for _ in range(EXTRAS_IN_ONE_UP_TO + 6)]
    ids = [c.id for c in campaigns]
    first, second = ids[0], ids[1]
    tombstone = replace(
        creative(first, "cr-2"), deleted=True, deleted_at=NOW - timedelta(minutes=5), version=2
    )
    async with SqlUnitOfWork(engine) as uow:
        await uow.save_campaigns(campaigns, NOW)
        await uow.save_creatives([creative(first, "cr-1"), tombstone, creative(second, "a")], NOW)
        await uow.save_holds(
            {
                first: (frozenset({Hold.SUSPENDED, Hold.BILLING_ERROR}), "policy breach"),
                second: (frozenset(), None),
            },
            NOW,
        )
        await uow.save_accounts([Account.open(campaigns[0]), Account.open(campaigns[2])], NOW)
        await uow.commit()

    unknown = uuid.uuid4()
    async with SqlUnitOfWork(engine) as uow:
        many = await uow.load_extras([*ids, unknown])  # three statements
        assert await uow.lock_campaigns(ids[:10]) == {c.id: c for c in campaigns[:10]}
        few = await uow.load_extras([*ids[:10], unknown])  # one statement
    assert many.creatives[first] == {"cr-1": creative(first, "cr-1"), "cr-2": tombstone}
    assert many.holds[first] == frozenset({Hold.SUSPENDED, Hold.BILLING_ERROR})
    assert many.suspension_reasons[first] == "policy breach"
    assert set(many.accounts) == {ids[0], ids[2]}
    wanted = [*ids[:10], unknown]
    assert few.creatives == {k: many.creatives[k] for k in wanted}
    assert few.holds == {k: many.holds[k] for k in wanted}
    assert few.suspension_reasons == {k: many.suspension_reasons[k] for k in wanted}
    assert few.accounts == {k: v for k, v in many.accounts.items() if k in wanted}
