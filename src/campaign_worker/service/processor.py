"""The message path: one batch of inbound items -> one transaction (inbox + state + history +
outbox + dead letters), with the failure modes named:

* permanent input errors were already turned into `Undecodable` items: they are stored and
  published to the dead-letter topic, and the batch moves on;
* rule violations become `command.rejected` events inside the same transaction;
* transient errors (database unreachable, serialization failure, deadlock) are retried with
  backoff, forever, without committing the Kafka offset;
* any other error is retried a few times, then the batch is split and the one message that
  keeps failing is dead-lettered as `processing_failed`, so a poison message cannot stop the
  partition for good.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from campaign_worker.service.handlers import HANDLERS, BatchContext, products_needed
from campaign_worker.service.inbound import Inbound, Item, Undecodable
from campaign_worker.service.outgoing import dead_letter
from campaign_worker.service.unit_of_work import (
    DeadLetterEntry,
    InboxEntry,
    UnitOfWorkFactory,
)

log = logging.getLogger(__name__)


class ProcessingObserver(Protocol):
    """What the processor reports; the metrics adapter implements it."""

    def batch_committed(
        self,
        ctx: BatchContext,
        dead_lettered: Sequence[DeadLetterEntry],
        duplicates: Sequence[Inbound],
        seconds: float,
    ) -> None: ...

    def batch_failed(self, error: BaseException, transient: bool) -> None: ...


class NullObserver:
    def batch_committed(
        self,
        ctx: BatchContext,
        dead_lettered: Sequence[DeadLetterEntry],
        duplicates: Sequence[Inbound],
        seconds: float,
    ) -> None:
        pass

    def batch_failed(self, error: BaseException, transient: bool) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # for non-transient errors
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0

    def delay(self, attempt: int) -> float:
        base = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)


class Stopping(Exception):
    """Raised out of a retry loop when the worker is shutting down: do not commit."""


class Processor:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        physical_topic: Callable[[str], str],
        is_transient: Callable[[BaseException], bool],
        retry: RetryPolicy = RetryPolicy(),
        observer: ProcessingObserver | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._uow_factory = uow_factory
        self._physical_topic = physical_topic
        self._is_transient = is_transient
        self._retry = retry
        self._observer = observer or NullObserver()
        self._clock = clock
        self._on_commit = on_commit

    async def process(self, items: Sequence[Item]) -> BatchContext:
        """Process one batch in one transaction. Raises on any failure (nothing committed)."""
        started = asyncio.get_running_loop().time()
        now = self._clock()
        undecodable = [i for i in items if isinstance(i, Undecodable)]
        inbound: list[Inbound] = []
        seen: set[str] = set()
        for i in items:
            if isinstance(i, Inbound) and i.message_id not in seen:
                seen.add(i.message_id)
                inbound.append(i)
        async with self._uow_factory() as uow:
            stored = await uow.add_dead_letters(
                [
                    DeadLetterEntry(
                        source=u.source,
                        physical_topic=self._physical_topic(u.source.topic),
                        code=u.code,
                        message=u.message,
                        message_id=u.message_id,
                        type=u.type,
                    )
                    for u in undecodable
                ]
            )
            fresh_ids = await uow.claim_inbox(
                [InboxEntry(message_id=i.message_id, type=i.type, source=i.source) for i in inbound]
            )
            fresh = [i for i in inbound if i.message_id in fresh_ids]
            claimed: set[str] = set()
            duplicates: list[Inbound] = []
            for i in items:
                if isinstance(i, Inbound):
                    if i.message_id in fresh_ids and i.message_id not in claimed:
                        claimed.add(i.message_id)
                    else:
                        duplicates.append(i)

            campaigns = await uow.lock_campaigns(
                i.campaign_id for i in fresh if i.campaign_id is not None
            )
            wanted_products: set[str] = set()
            for i in fresh:
                wanted_products |= products_needed(i, campaigns)
            products = await uow.get_products(wanted_products)

            ctx = BatchContext(now=now, campaigns=campaigns, products=products)
            # Kafka orders nothing across topics; reference data that arrived in the same
            # batch is applied before the commands that may consult it.
            for i in sorted(fresh, key=lambda i: i.campaign_id is not None):
                HANDLERS[i.type](ctx, i)
            for d in stored:
                ctx.outbox.append(
                    dead_letter(
                        physical_topic=d.physical_topic,
                        partition=d.source.partition,
                        offset=d.source.offset,
                        key=d.source.key,
                        value=d.source.value,
                        headers=d.source.headers,
                        code=d.code,
                        message=d.message,
                        now=now,
                    )
                )

            await uow.save_products(list(ctx.changed_products.values()), now)
            await uow.save_campaigns(list(ctx.changed_campaigns.values()), now)
            await uow.add_history(ctx.history)
            await uow.add_outbox(ctx.outbox)
            await uow.commit()
        self._observer.batch_committed(
            ctx, stored, duplicates, asyncio.get_running_loop().time() - started
        )
        if ctx.outbox:
            self._on_commit()
        return ctx

    async def process_reliably(self, items: Sequence[Item], stopping: asyncio.Event) -> None:
        """Process until committed. Returns only once everything in `items` is durably
        handled (applied, refused, duplicate or dead-lettered); raises `Stopping` when the
        worker shuts down first, in which case nothing of this batch was committed."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.process(items)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                transient = self._is_transient(error)
                self._observer.batch_failed(error, transient)
                if not transient and attempt >= self._retry.max_attempts:
                    log.error(
                        "batch of %d failed %d times (%r); isolating the failing message",
                        len(items),
                        attempt,
                        error,
                    )
                    await self._isolate(items, stopping)
                    return
                delay = self._retry.delay(attempt)
                log.warning(
                    "batch of %d failed (attempt %d, %s): %r; retrying in %.2fs",
                    len(items),
                    attempt,
                    "transient" if transient else "error",
                    error,
                    delay,
                )
                await self._sleep_or_stop(delay, stopping)

    async def _isolate(self, items: Sequence[Item], stopping: asyncio.Event) -> None:
        """Process one message per transaction; dead-letter the ones that keep failing."""
        for item in items:
            attempt = 0
            while True:
                attempt += 1
                try:
                    await self.process([item])
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    transient = self._is_transient(error)
                    self._observer.batch_failed(error, transient)
                    if not transient and attempt >= self._retry.max_attempts:
                        log.error(
                            "dead-lettering message %s after %d failures: %r",
                            getattr(item, "message_id", None),
                            attempt,
                            error,
                        )
                        await self.process([_as_processing_failure(item, error)])
                        break
                    await self._sleep_or_stop(self._retry.delay(attempt), stopping)

    @staticmethod
    async def _sleep_or_stop(delay: float, stopping: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stopping.wait(), timeout=delay)
        except TimeoutError:
            return
        raise Stopping


def _as_processing_failure(item: Item, error: BaseException) -> Undecodable:
    if isinstance(item, Undecodable):
        return item
    return Undecodable(
        source=item.source,
        code="processing_failed",
        message=f"{type(error).__name__}: {error}"[:2000],
        message_id=item.message_id,
        type=item.type,
    )
