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
