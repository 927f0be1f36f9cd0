"""The notifier: sends the pending notifications (spec §10) and records what became of each.

Every replica runs one. It takes due rows of `notifications` one at a time, each in its own
transaction:

    BEGIN
    SELECT ... WHERE status = 'pending' AND next_attempt_at <= now
        ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED     -- claim
    (send the email over SMTP, bounded by CAMPAIGN_WORKER_SMTP_TIMEOUT_S)
    UPDATE notifications SET status/attempts/next_attempt_at/last_error ...
    INSERT INTO outbox (notification.sent | notification.failed)     -- record
    COMMIT

at most `CAMPAIGN_WORKER_NOTIFIER_BATCH_SIZE` per round, then it polls again (or is woken by a
commit that requested notifications). Why one row per transaction rather than a batch claim:

* **the crash window is the single message in flight.** The claim is a row lock, not a
  committed mark, so a worker killed between the SMTP server's acceptance and the commit
  leaves exactly that row pending (its lock dies with the connection), and the next round of
  any replica sends it again: at most one duplicate, with the same Message-ID so mail clients
  can fold it. Every other row is either recorded or untouched. A batch claimed in one
  transaction and recorded at its end would resend the whole batch; a committed claim (a
  lease) would make recovery wait for the lease to expire.
* **any number of replicas:** `SKIP LOCKED` hands each row in flight to one sender only, and
  the status test makes a recorded row invisible to the others.
* **no storms:** a transient failure (server down, timeout, 4xx) pushes that row's next try
  back exponentially (`CAMPAIGN_WORKER_SMTP_BACKOFF_*`, with jitter) and ends the round, so
  an unreachable server costs one connection attempt per poll, not one per pending row; after
  `CAMPAIGN_WORKER_SMTP_MAX_ATTEMPTS` tries the row fails. A permanent failure (5xx, refused
  recipient, invalid address) fails at once, after one attempt.

`notification.sent` / `notification.failed` go to the outbox in the transaction that records
the outcome, so the events and the rows never disagree. The transaction stays open during the
send (bounded by the SMTP timeout); keep Postgres' `idle_in_transaction_session_timeout`, if
set, above it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from campaign_worker.adapters.db.tables import notifications, outbox
from campaign_worker.adapters.db.uow import encode_headers
from campaign_worker.adapters.mailer import Mailer, Outgoing, SendError, TransientSendError
from campaign_worker.adapters.metrics import Metrics
from campaign_worker.service.outbound import notification_outcome

log = logging.getLogger(__name__)

Outcome = Literal["sent", "failed", "retried"]


class Notifier:
    def __init__(
        self,
        engine: AsyncEngine,
        mailer: Mailer,
        *,
        metrics: Metrics,
        max_attempts: int = 10,
        backoff_initial_s: float = 5.0,
        backoff_max_s: float = 600.0,
        batch_size: int = 50,
        poll_interval_s: float = 1.0,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._mailer = mailer
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._on_commit = on_commit
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="notifier")

    def wake(self) -> None:
        """A hint that notifications were committed; polling catches everything else."""
        self._wake.set()

    def request_stop(self) -> None:
        """Take no new notification; the one in flight finishes and is recorded."""
        self._stopping.set()
        self._wake.set()

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget, not a cancel
        self.request_stop()
        task, self._task = self._task, None
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            # the send in flight outlived the budget: its row stays pending (sent again
            # by the next run: at most this one duplicate)
            log.warning("notifier did not finish its send within %.1fs; cancelling", timeout)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        backoff = self._poll_interval_s
        while not self._stopping.is_set():
            try:
                full = await self.run_once()
                backoff = self._poll_interval_s
                if not full:
                    await self._pause(self._poll_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database: rows stay pending, retried
                self._metrics.notifier_failures.inc()
                log.warning("notifier round failed: %r; retrying in %.1fs", error, backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    # ------------------------------------------------------------------ the work

    async def run_once(self) -> bool:
        """One round: send due notifications, one transaction each, until none is due, a
        transient failure ends the round, or `batch_size` were handled (returns True then:
        there may be more right away)."""
        for _ in range(self._batch_size):
            if self._stopping.is_set():
                return False
            outcome = await self.send_one()
            if outcome is None or outcome == "retried":
                return False
        return True

    async def send_one(self) -> Outcome | None:
        """Claim the most overdue pending notification, send it, record the outcome, commit.
        Returns None when nothing is due."""
        now = self._clock()
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(notifications)
                    .where(notifications.c.status == "pending")
                    .where(notifications.c.next_attempt_at <= now)
                    .order_by(notifications.c.next_attempt_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if row is None:
                await conn.rollback()
                return None
            loop = asyncio.get_running_loop()
            started = loop.time()
            error: SendError | None = None
            try:
                await self._mailer.send(_outgoing(row))
            except SendError as e:
                error = e
            except Exception as e:  # a bug, not the server's answer: try again later
                error = TransientSendError(f"{type(e).__name__}: {e}"[:1000])
            self._metrics.notification_send_seconds.labels(
                "sent" if error is None else "permanent" if error.permanent else "transient"
            ).observe(loop.time() - started)
            outcome = await self._record(conn, row, error, self._clock())
            await conn.commit()
        self._metrics.notifications.labels(row.kind, outcome).inc()
        if outcome == "retried":
            log.info(
                "notification %s (%s) attempt %d failed, retrying: %s",
                row.id,
                row.kind,
                row.attempts + 1,
                error,
            )
        elif outcome == "failed":
            log.warning("notification %s (%s) failed: %s", row.id, row.kind, error)
            self._on_commit()
        else:
            log.debug("notification %s (%s) sent", row.id, row.kind)
            self._on_commit()
        return outcome

    def backoff(self, attempts: int) -> float:
        """Seconds before try `attempts + 1`: exponential, capped, with jitter."""
        base = min(self._backoff_max_s, self._backoff_initial_s * 2.0 ** min(attempts - 1, 60))
        return float(base * (0.5 + random.random() / 2))

    async def _record(
        self, conn: AsyncConnection, row: Any, error: SendError | None, now: datetime
    ) -> Outcome:
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "updated_at": now}
        outcome: Outcome
        if error is None:
            outcome = "sent"
            values.update(status="sent", sent_at=now, last_error=None)
        elif error.permanent or attempts >= self._max_attempts:
            outcome = "failed"
            message = str(error)
            if not error.permanent:
                message = f"gave up after {attempts} attempts: {message}"
            values.update(status="failed", last_error=message)
        else:
            outcome = "retried"
            values.update(
                next_attempt_at=now + timedelta(seconds=self.backoff(attempts)),
                last_error=str(error),
            )
        await conn.execute(
            update(notifications).where(notifications.c.id == row.id).values(**values)
        )
        if outcome != "retried":
            message_out = notification_outcome(
                sent=outcome == "sent",
                notification_id=row.id,
                campaign_id=row.campaign_id,
                attempts=attempts,
                error=values.get("last_error"),
                correlation_id=row.correlation_id,
                now=now,
            )
            await conn.execute(
                insert(outbox).values(
                    topic=message_out.topic,
                    key=message_out.key,
                    value=message_out.value,
                    headers=encode_headers(message_out.headers),
                )
            )
        return outcome


def _outgoing(row: Any) -> Outgoing:
    payload = row.payload or {}
    return Outgoing(
        notification_id=str(row.id),
        kind=row.kind,
        to=row.recipient,
        subject=str(payload.get("subject", "")),
        message_id=row.message_id,
        template_data=dict(payload.get("template_data") or {}),
        created_at=row.created_at,
    )
