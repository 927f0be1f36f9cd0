"""The outbox relay: the only code that publishes to Kafka.

One relay at a time publishes (a Postgres advisory lock held on a dedicated connection picks
the leader among replicas), rows go out in id order and are deleted only after Kafka has
acknowledged them, so one campaign's messages are never reordered and never lost; a crash
between the acknowledgement and the delete re-publishes a few rows (consumers dedupe by the
CloudEvent id).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from campaign_worker.adapters.db.tables import outbox
from campaign_worker.adapters.db.uow import decode_headers
from campaign_worker.adapters.metrics import Metrics

log = logging.getLogger(__name__)

RELAY_LOCK = 0x63_77_72_6C  # "cwrl"


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        *,
        physical_topic: Callable[[str], str],
        metrics: Metrics,
        batch_size: int = 1000,
        poll_interval_s: float = 0.2,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._physical_topic = physical_topic
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self.is_leader = False

    def wake(self) -> None:
        """A hint that rows were committed; polling catches everything else."""
        self._wake.set()

    async def run(self) -> None:
        backoff = self._poll_interval_s
        while not self._stopping.is_set():
            try:
                async with self._engine.connect() as lock_conn:
                    if not await self._try_lead(lock_conn):
                        await self._pause(max(self._poll_interval_s, 1.0))
                        continue
                    self.is_leader = True
                    log.info("outbox relay is the leader")
                    try:
                        await self._lead(lock_conn)
                    finally:
                        self.is_leader = False
                backoff = self._poll_interval_s
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._metrics.relay_failures.inc()
                log.warning("outbox relay failed: %r; retrying in %.1fs", error, backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _try_lead(self, conn: AsyncConnection) -> bool:
        got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": RELAY_LOCK})
        await conn.commit()
        return bool(got)

    async def _lead(self, lock_conn: AsyncConnection) -> None:
        while not self._stopping.is_set():
            published = await self.publish_once()
            if published == 0:
                self._idle.set()
                await self._pause(self._poll_interval_s)
                # the lock lives as long as this connection: make sure it still does
                await lock_conn.execute(text("SELECT 1"))
                await lock_conn.commit()

    async def publish_once(self) -> int:
        """Publish one batch of the oldest rows; return how many went out."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        outbox.c.id,
                        outbox.c.topic,
                        outbox.c.key,
                        outbox.c.value,
                        outbox.c.headers,
                        outbox.c.created_at,
                    )
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                )
            ).all()
            await conn.commit()
            if not rows:
                self._metrics.outbox_backlog.set(0)
                self._metrics.outbox_oldest_age.set(0)
                return 0
            self._metrics.outbox_oldest_age.set(
                max(0.0, (datetime.now(UTC) - rows[0].created_at).total_seconds())
            )
            futures = [
                await self._producer.send(
                    self._physical_topic(r.topic),
                    value=r.value,
                    key=r.key,
                    headers=decode_headers(r.headers),
                )
                for r in rows
            ]
            await asyncio.gather(*futures)
            await conn.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in rows])))
            await conn.commit()
            for r in rows:
                self._metrics.outbox_published.labels(r.topic).inc()
            if len(rows) == self._batch_size:
                backlog = await conn.scalar(select(func.count()).select_from(outbox))
                await conn.commit()
                self._metrics.outbox_backlog.set(backlog or 0)
            else:
                self._metrics.outbox_backlog.set(0)
            return len(rows)

    async def _pause(self, seconds: float) -> None:
        wake = asyncio.ensure_future(self._wake.wait())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({wake, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            stop.cancel()
        self._wake.clear()

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget, not a cancel
        """On shutdown: publish what is committed (if leader), then stop."""
        self._idle.clear()
        self.wake()
        if self.is_leader:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                log.warning("outbox not drained within %.1fs; rows stay for the next run", timeout)
        self._stopping.set()
