"""The scheduler: an APScheduler interval job in every replica that applies due starts and
ends (spec T5, T6, T7), and the statements of closed campaigns whose settlement grace ran out
(spec §6), straight from Postgres.

Why this design (and not APScheduler date jobs, nor publishing `schedule.*_due` to Kafka):
due times are campaign columns (`start_at`, `end_at`, indexed with the status), so an edit or
`campaign.extend_end` moves the trigger just by changing the row, downtime is caught up by the
next tick, and no job store has to be shared between processes (APScheduler 3 cannot). Each
tick claims due rows with `FOR UPDATE SKIP LOCKED` and applies the transition in the same
transaction that writes the history and the outbox, so any number of replicas apply each
transition exactly once, with no Kafka round trip between "due" and "applied".
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from campaign_worker.adapters.metrics import Metrics
from campaign_worker.service.processor import Processor

log = logging.getLogger(__name__)


class DueScheduler:
    def __init__(
        self, processor: Processor, metrics: Metrics, *, tick_s: float, batch_size: int
    ) -> None:
        self._processor = processor
        self._metrics = metrics
        self._tick_s = tick_s
        self._batch_size = batch_size
        self._scheduler: AsyncIOScheduler | None = None
        self._running: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_job(
            self._tick,
            "interval",
            seconds=self._tick_s,
            next_run_time=datetime.now(UTC),
            max_instances=1,  # a slow tick is never overlapped by the next one
            coalesce=True,
            misfire_grace_time=None,  # a late tick still runs (the default drops it)
            id="due-campaigns",
        )
        self._scheduler.start()

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget, not a cancel
        """No new tick; the one in flight may finish within `timeout`, then is cancelled (its
        transaction rolls back; the next start applies what is due)."""
        if self._scheduler is not None:
            self._scheduler.pause()
        running = self._running
        if running is not None and not running.done():
            try:
                await asyncio.wait_for(asyncio.shield(running), timeout)
            except TimeoutError:
                pass  # the shutdown below cancels it
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def _tick(self) -> None:
        self._running = asyncio.current_task()
        try:
            await self.run_once()
            self._metrics.scheduler_ticks.labels("ok").inc()
        except asyncio.CancelledError:
            # APScheduler would log a cancelled job as an ERROR with its traceback
            log.info("scheduler tick cancelled by the shutdown; the next start applies what is due")
            return
        except Exception as error:  # the next tick retries; counted and logged
            self._metrics.scheduler_ticks.labels("failed").inc()
            log.warning("scheduler tick failed: %r", error)

    async def run_once(self) -> int:
        """Apply everything due now, in bounded batches (starts and ends first, then the
        settlements they may have made due); return how many were applied."""
        total = 0
        for claim in (self._processor.process_due, self._processor.process_due_settlements):
            while True:
                claimed = await claim(self._batch_size)
                total += claimed
                if claimed < self._batch_size:
                    break
        return total
