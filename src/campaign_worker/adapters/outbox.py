"""The outbox relay: the only code that publishes to Kafka.

One relay at a time publishes (a Postgres advisory lock held on a dedicated connection picks
the leader among replicas; the leader also reads and deletes on that connection), rows go out
in id order and are deleted only after Kafka has acknowledged them, so one campaign's
messages are never reordered and never lost; a crash between the acknowledgement and the
delete re-publishes a few rows (consumers dedupe by the CloudEvent id).

A round is one read of the oldest rows, one record batch per partition at a time (records
appended in id order to the partition the producer's default partitioner picks for their
key: murmur2 of the key bytes, the Java client's rule, so a campaign's records stay on its
partition), and one DELETE of the acknowledged ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from campaign_worker.adapters.db.uow import decode_headers, driver_connection
from campaign_worker.adapters.metrics import Metrics

log = logging.getLogger(__name__)

RELAY_LOCK = 0x63_77_72_6C  # "cwrl"

READ_OUTBOX = (
    "SELECT id, topic, key, value, headers::text, created_at FROM outbox ORDER BY id LIMIT $1"
)
DELETE_OUTBOX = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
# The backlog gauge after a full round: the newest id minus the last one published (an
# index lookup; ids skipped by rolled-back transactions make it an upper bound).
NEWEST_OUTBOX_ID = "SELECT max(id) FROM outbox"
# Inbox retention: one bounded batch of the oldest expired rows per statement (the index of
# migration 0009 on received_at finds them without reading the rest of the table).
PRUNE_INBOX = (
    "DELETE FROM inbox WHERE message_id IN (SELECT message_id FROM inbox"
    " WHERE received_at < $1 ORDER BY received_at LIMIT $2)"
)


async def prune_inbox(
    pg: Any, older_than: datetime, *, batch_size: int, max_batches: int = 20
) -> tuple[int, bool]:
    """Delete inbox rows received before `older_than`, `batch_size` at a time, each batch its
    own short statement (no long lock, no long transaction), at most `max_batches` of them.
    Returns how many rows went and whether expired rows may remain (the last batch was full)."""
    deleted = 0
    for _ in range(max_batches):
        status = await pg.execute(PRUNE_INBOX, older_than, batch_size)
        n = int(status.rsplit(" ", 1)[-1])
        deleted += n
        if n < batch_size:
            return deleted, False
    return deleted, True


@lru_cache(maxsize=1 << 16)
def _hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_for(key: bytes | None, partitions: list[int], available: list[int]) -> int:
    """The partition aiokafka's default partitioner (the Java client's rule) picks: murmur2
    of the key bytes, made positive, modulo the partition count, among all partitions sorted
    by id; a record without a key goes to a random available partition."""
    if key is None:
        return random.choice(available or partitions)
    return partitions[_hash(key) % len(partitions)]


_HEADERS: dict[str, list[tuple[str, bytes]]] = {}


def _headers(stored: str) -> list[tuple[str, bytes]]:
    """Kafka headers from their stored JSON text (the few distinct ones are kept decoded)."""
    headers = _HEADERS.get(stored)
    if headers is None:
        headers = decode_headers(json.loads(stored))
        if len(_HEADERS) < 256:
            _HEADERS[stored] = headers
    return headers


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
        inbox_retention_s: float | None = None,
        inbox_prune_interval_s: float = 60.0,
        inbox_prune_batch_size: int = 5000,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._physical_topic = physical_topic
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._inbox_retention = (
            timedelta(seconds=inbox_retention_s) if inbox_retention_s is not None else None
        )
        self._prune_interval_s = inbox_prune_interval_s
        self._prune_batch_size = inbox_prune_batch_size
        self._topics: dict[str, str] = {}
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
                    pg = await driver_connection(lock_conn)
                    if not await self._try_lead(pg):
                        await self._pause(max(self._poll_interval_s, 1.0))
                        continue
                    self.is_leader = True
                    log.info("outbox relay is the leader")
                    try:
                        await self._lead(pg)
                    finally:
                        self.is_leader = False
                        await self._resign(lock_conn, pg)
                backoff = self._poll_interval_s
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._metrics.relay_failures.inc()
                log.warning("outbox relay failed: %r; retrying in %.1fs", error, backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, 10.0)

    @staticmethod
    async def _resign(lock_conn: AsyncConnection, pg: Any) -> None:
        """Give the lock up before the connection goes back to the pool (a pooled
        connection still holding it would keep every relay of this process from leading)."""
        try:
            if not pg.is_closed():
                await pg.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK)
                return
        except Exception as error:
            log.debug("could not release the relay lock: %r", error)
        await lock_conn.invalidate()  # closing the session releases the lock

    @staticmethod
    async def _try_lead(pg: Any) -> bool:
        return bool(await pg.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK))

    async def _lead(self, pg: Any) -> None:
        # Reads and deletes run on the connection that holds the lock: no pool checkout per
        # round, and a lost connection (and with it the lock) fails the very next round.
        loop = asyncio.get_running_loop()
        next_prune = loop.time()  # the leader prunes once when it takes over, then every interval
        while not self._stopping.is_set():
            published = await self._publish(pg)
            if self._inbox_retention is not None and loop.time() >= next_prune:
                more = await self._prune(pg)
                # a backlog of expired rows goes in bounded passes between publishing rounds
                next_prune = loop.time() + (0.0 if more else self._prune_interval_s)
            if published == 0:
                self._idle.set()
                await self._pause(self._poll_interval_s)

    async def _prune(self, pg: Any) -> bool:
        """One retention pass on the leader's connection; True if expired rows remain. A
        failed pass is logged and tried again an interval later: it must not stop publishing
        (a lost connection fails the next publishing round anyway)."""
        assert self._inbox_retention is not None
        try:
            deleted, more = await prune_inbox(
                pg,
                datetime.now(UTC) - self._inbox_retention,
                batch_size=self._prune_batch_size,
                max_batches=4,
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning(
                "inbox retention failed: %r; next pass in %.0fs", error, self._prune_interval_s
            )
            return False
        if deleted:
            self._metrics.inbox_pruned.inc(deleted)
            log.debug("inbox retention deleted %d rows", deleted)
        return more

    async def publish_once(self) -> int:
        """Publish one batch of the oldest rows; return how many went out."""
        async with self._engine.connect() as conn:
            return await self._publish(await driver_connection(conn))

    async def _publish(self, pg: Any) -> int:
        rows = await pg.fetch(READ_OUTBOX, self._batch_size)
        metrics = self._metrics
        if not rows:
            metrics.outbox_backlog.set(0)
            metrics.outbox_oldest_age.set(0)
            return 0
        metrics.outbox_oldest_age.set(max(0.0, (datetime.now(UTC) - rows[0][5]).total_seconds()))
        await asyncio.gather(*await self._produce(rows))  # every record acknowledged
        await pg.execute(DELETE_OUTBOX, [r[0] for r in rows])
        for topic, n in Counter(r[1] for r in rows).items():
            metrics.outbox_published.labels(topic).inc(n)
        if len(rows) == self._batch_size:
            newest = await pg.fetchval(NEWEST_OUTBOX_ID)
            metrics.outbox_backlog.set(max(0, (newest or 0) - rows[-1][0]))
        else:
            metrics.outbox_backlog.set(0)
        return len(rows)

    async def _produce(self, rows: list[Any]) -> list[asyncio.Future[Any]]:
        """Queue every row, in id order, as record batches; return their delivery futures.
        A partition has one open batch at a time: a full one is queued before the next one
        is started, so the partition's records keep their order."""
        producer = self._producer
        futures: list[asyncio.Future[Any]] = []
        open_batches: dict[tuple[str, int], Any] = {}
        layouts: dict[str, tuple[list[int], list[int]]] = {}
        for row in rows:
            topic = self._topics.get(row[1])
            if topic is None:
                topic = self._topics[row[1]] = self._physical_topic(row[1])
            layout = layouts.get(topic)
            if layout is None:
                partitions = sorted(await producer.partitions_for(topic))
                available = sorted(
                    producer.client.cluster.available_partitions_for_topic(topic) or ()
                )
                layout = layouts[topic] = (partitions, available)
            key = row[2]
            tp = (topic, partition_for(key, *layout))
            batch = open_batches.get(tp)
            if batch is None:
                batch = open_batches[tp] = producer.create_batch()
            headers = _headers(row[4])
            if batch.append(timestamp=None, key=key, value=row[3], headers=headers) is None:
                futures.append(await producer.send_batch(batch, tp[0], partition=tp[1]))
                batch = open_batches[tp] = producer.create_batch()
                batch.append(timestamp=None, key=key, value=row[3], headers=headers)
        for (topic, partition), batch in open_batches.items():
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

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
