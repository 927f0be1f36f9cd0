"""Session-wide servers (real Kafka, real Postgres: started once, on first use) and the
per-test harness: a fresh database cloned from a migrated template, a unique topic prefix
and consumer group, the worker in-process, and contract-speaking Kafka clients."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from campaign_worker.adapters.db.migrate import upgrade
from campaign_worker.config import Settings
from tests.support.kafka_io import Downstream, Upstream


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    from tests.support.servers import kafka_server

    with kafka_server() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    from tests.support.servers import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
async def template_database(postgres_url: str) -> AsyncIterator[str]:
    """A database migrated once per session; each test clones it (fast, isolated)."""
    name = f"cw_template_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = _with_db(postgres_url, name)
    await upgrade(Settings(database_url=url).sqlalchemy_url)
    yield name
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_url(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await conn.close()
    yield _with_db(postgres_url, name)
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


class Harness:
    """The worker under test plus the outside world around it."""

    def __init__(self, kafka: str, database_url: str, prefix: str) -> None:
        self.kafka = kafka
        self.database_url = database_url
        self.prefix = prefix
        self.workers: list[Any] = []
        self.up = Upstream(kafka, prefix)
        self.down = Downstream(kafka, prefix)
        self._down_started = False

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "kafka_bootstrap_servers": self.kafka,
            "topic_prefix": self.prefix,
            "group_id": f"cw-{self.prefix}",
            "http_port": 0,
            "http_host": "127.0.0.1",
            "topic_partitions": 3,
            "relay_poll_interval_s": 0.05,
            "batch_timeout_ms": 20,
        }
        values.update(overrides)
        return Settings(**values)

    async def start_worker(self, **overrides: Any) -> Any:
        from campaign_worker.bootstrap import build_worker

        worker = build_worker(self.settings(**overrides))
        try:
            await worker.start(migrate=False)
        except BaseException:
            await worker.stop()
            raise
        self.workers.append(worker)
        if not self._down_started:
            await self.down.start()
            self._down_started = True
        return worker

    async def stop_worker(self, worker: Any) -> None:
        self.workers.remove(worker)
        await worker.stop()

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self.db()
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def close(self) -> None:
        for worker in list(self.workers):
            await worker.stop()
        if self._down_started:
            await self.down.stop()
        await self.up.stop()


@pytest.fixture
async def harness(
    kafka_bootstrap: str, database_url: str, topic_prefix: str
) -> AsyncIterator[Harness]:
    h = Harness(kafka_bootstrap, database_url, topic_prefix)
    await h.up.start()
    try:
        yield h
    finally:
        await h.close()
