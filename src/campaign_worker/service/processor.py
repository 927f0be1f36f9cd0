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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from campaign_worker import topics
from campaign_worker.domain.commands import EndDue, SettleCampaign, StartDue
from campaign_worker.domain.errors import Refusal
from campaign_worker.domain.model import Actor, Role, Status
from campaign_worker.domain.settlement import DEFAULT_RULES, MoneyRules
from campaign_worker.logs import log_context
from campaign_worker.service.batch import Batch, State
from campaign_worker.service.handlers.route import Wants
from campaign_worker.service.inbound import Inbound, Item, Source, Undecodable
from campaign_worker.service.outbound import dead_letter
from campaign_worker.service.routing import ROUTES, check_routes
from campaign_worker.service.unit_of_work import (
    DeadLetterEntry,
    DueSettlement,
    DueTrigger,
    HistoryEntry,
    InboxEntry,
    NotificationRequest,
    UnitOfWork,
    UnitOfWorkFactory,
)

log = logging.getLogger(__name__)

_Due = TypeVar("_Due", DueTrigger, DueSettlement)


@dataclass(frozen=True)
class BatchReport:
    """What one committed batch did, for the observer (metrics): every message's outcome,
    derived from what the batch produced rather than counted by the handlers."""

    size: int  # records in the batch, duplicates and dead letters included
    applied: Sequence[Inbound]
    rejected: Sequence[tuple[Inbound, str]]  # (message, refusal code)
    duplicates: Sequence[Inbound]
    dead_lettered: Sequence[DeadLetterEntry]
    history: Sequence[HistoryEntry]  # transitions and scheduling lateness are read from it
    notifications: Sequence[NotificationRequest]
    outbox_rows: int  # messages the batch wrote to the outbox
    seconds: float = 0.0


class ProcessingObserver(Protocol):
    """What the processor reports; the metrics adapter implements it."""

    def batch_committed(self, report: BatchReport) -> None: ...

    def batch_failed(self, error: BaseException, transient: bool) -> None: ...


class NullObserver:
    def batch_committed(self, report: BatchReport) -> None:
        pass

    def batch_failed(self, error: BaseException, transient: bool) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # for non-transient errors
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0

    def delay(self, attempt: int) -> float:
        base = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** (attempt - 1))
        return float(base * (0.5 + random.random() / 2))


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
        rules: MoneyRules = DEFAULT_RULES,
        publish_state: bool = True,
    ) -> None:
        check_routes()  # a command without a handler stops the worker here, not on a message
        self._rules = rules
        self._publish_state = publish_state
        self._uow_factory = uow_factory
        self._physical_topic = physical_topic
        self._is_transient = is_transient
        self._retry = retry
        self._observer = observer or NullObserver()
        self._clock = clock
        self._on_commit = on_commit

    async def process(self, items: Sequence[Item]) -> BatchReport:
        """Process one batch in one transaction. Raises on any failure (nothing committed)."""
        started = asyncio.get_running_loop().time()
        now = self._clock()
        async with self._uow_factory() as uow:
            report = await self._apply(uow, items, now)
            await uow.commit()
        return self._committed(report, started)

    async def process_due(self, limit: int) -> int:
        """The scheduler's tick: claim campaigns whose start or end is due (rows locked with
        SKIP LOCKED, so replicas share the work and never take the same campaign), and apply
        their transitions in the same transaction, as system commands. Each trigger's id is
        derived from the campaign and the due instant, so the inbox makes it exactly once even
        if a tick is retried. Returns how many campaigns were claimed."""
        return await self._process_claimed(
            lambda uow, now: uow.claim_due(now, limit), scheduled_trigger
        )

    async def process_due_settlements(self, limit: int) -> int:
        """The scheduler's tick for statements (spec §6): claim closed campaigns whose
        settlement grace ran out (SKIP LOCKED, like `process_due`) and settle them in the same
        transaction, as system commands with ids derived from the campaign and the due
        instant. Returns how many were claimed."""
        return await self._process_claimed(
            lambda uow, now: uow.claim_settlements(now, limit), settlement_trigger
        )

    async def _process_claimed(
        self,
        claim: Callable[[UnitOfWork, datetime], Awaitable[Sequence[_Due]]],
        as_item: Callable[[_Due], Inbound],
    ) -> int:
        """Claim due rows and apply them as system commands in the claiming transaction."""
        started = asyncio.get_running_loop().time()
        now = self._clock()
        async with self._uow_factory() as uow:
            due = await claim(uow, now)
            if not due:
                return 0
            report = await self._apply(uow, [as_item(d) for d in due], now)
            await uow.commit()
        self._committed(report, started)
        return len(due)

    def _committed(self, report: BatchReport, started: float) -> BatchReport:
        report = replace(report, seconds=asyncio.get_running_loop().time() - started)
        self._observer.batch_committed(report)
        if report.outbox_rows:
            self._on_commit()
        return report

    async def _apply(self, uow: UnitOfWork, items: Sequence[Item], now: datetime) -> BatchReport:
        """Everything one batch does inside its transaction; the caller commits."""
        undecodable = [i for i in items if isinstance(i, Undecodable)]
        first: dict[str, Inbound] = {}
        for i in items:
            if isinstance(i, Inbound):
                first.setdefault(i.message_id, i)
        inbound = list(first.values())
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

        batch = Batch(
            now, await self._load(uow, fresh), self._rules, publish_state=self._publish_state
        )
        applied: list[Inbound] = []
        rejected: list[tuple[Inbound, str]] = []
        # Kafka orders nothing across topics; reference data that arrived in the same
        # batch is applied before the commands that may consult it.
        for item in sorted(fresh, key=lambda i: i.campaign_id is not None):
            refusal = item.refusal
            if refusal is None:
                assert item.payload is not None
                route = ROUTES[type(item.payload)]
                if route.ends_first:
                    self._end_if_due(batch, item)
                batch.begin(item)
                try:
                    route.handle(batch, item, item.payload)
                except Refusal as raised:
                    refusal = raised
            if refusal is None:
                applied.append(item)
            else:
                batch.reject(item, refusal)
                rejected.append((item, refusal.code.value))
            batch.flush_serving(item)
        for d in stored:
            log.warning(
                "dead-lettered %s record: %s",
                d.code,
                d.message[:300],
                extra={
                    "message_id": d.message_id,
                    "topic": d.physical_topic,
                    "partition": d.source.partition,
                    "offset": d.source.offset,
                },
            )
            batch.out.outbox.append(
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
        await batch.write(uow)
        return BatchReport(
            size=len(items),
            applied=applied,
            rejected=rejected,
            duplicates=duplicates,
            dead_lettered=stored,
            history=batch.out.history,
            notifications=batch.out.notifications,
            outbox_rows=len(batch.out.outbox),
        )

    def _end_if_due(self, batch: Batch, item: Inbound) -> None:
        """Nothing revives a campaign whose end has passed: a command that arrives after the
        end instant sees the campaign as ended, because the due end is applied first, in this
        transaction, exactly as the scheduler would have applied it (spec §1 "Dates")."""
        campaign = batch.state.campaigns.get(item.campaign_id) if item.campaign_id else None
        if campaign is None or campaign.status not in END_DUE or batch.now < campaign.end_at:
            return
        trigger = scheduled_trigger(DueTrigger(campaign.id, "end", campaign.end_at))
        assert trigger.payload is not None
        batch.begin(trigger)
        ROUTES[type(trigger.payload)].handle(batch, trigger, trigger.payload)
        batch.flush_serving(trigger)

    async def _load(self, uow: UnitOfWork, fresh: Sequence[Inbound]) -> State:
        """Load (and lock) what the batch's messages want, as their handlers declare it."""
        wants = [
            ROUTES[type(i.payload)].wants(i.payload, i) if i.payload is not None else Wants()
            for i in fresh
        ]
        campaigns = await uow.lock_campaigns({c for w in wants for c in w.campaigns})
        # A product's buyability is a hold on each of its open campaigns: those are locked
        # and loaded only when an upsert in this batch changes the flag (most catalog
        # updates do not, and a product may have many campaigns).
        upserts = [w.buyability for w in wants if w.buyability is not None]
        known = await uow.get_products({p.id for p in upserts})
        flipped = {
            p.id for p in upserts if p.buyable != (known[p.id].buyable if p.id in known else True)
        }
        for product_id in sorted(flipped):
            campaigns.update(await uow.lock_campaigns_of_product(product_id))
        wanted_products = {p for w in wants for p in w.products}
        wanted_products |= {c.ad_product_id for c in campaigns.values()}
        products = known | await uow.get_products(wanted_products - known.keys())
        extras = await uow.load_extras(campaigns)
        relevance_products = {
            campaigns[c].ad_product_id for w in wants for c in w.relevance_peers if c in campaigns
        }
        peers = (
            await uow.relevance_peers(relevance_products, self._rules.relevance_min_impressions)
            if relevance_products
            else {}
        )
        categories = await uow.get_categories(
            {t for c in campaigns.values() for t in (*c.targeting.categories, *c.targeting.groups)}
        )
        return State.loaded(
            campaigns,
            extras,
            products,
            categories=categories,
            status_history=await uow.status_history({c for w in wants for c in w.status_history}),
            relevance_peers=peers,
        )

    async def process_reliably(self, items: Sequence[Item], stopping: asyncio.Event) -> None:
        """Process until committed. Returns only once everything in `items` is durably
        handled (applied, refused, duplicate or dead-lettered); raises `Stopping` when the
        worker shuts down first, in which case nothing of this batch was committed.

        Transient errors are retried forever; after `max_attempts` other errors the batch is
        split into one transaction per message, and a message that still fails that often is
        dead-lettered as `processing_failed`."""
        error = await self._until_committed(items, stopping)
        if error is None:
            return
        log.error(
            "batch of %d failed %d times (%r); isolating the failing message",
            len(items),
            self._retry.max_attempts,
            error,
        )
        for item in items:
            with log_context(
                message_id=getattr(item, "message_id", None),
                campaign_id=str(getattr(item, "campaign_id", None) or "") or None,
                correlation_id=getattr(item, "correlation_id", None),
                topic=item.source.topic,
                partition=item.source.partition,
                offset=item.source.offset,
            ):
                error = await self._until_committed([item], stopping)
                if error is not None:
                    log.error(
                        "dead-lettering the message after %d failures: %r",
                        self._retry.max_attempts,
                        error,
                    )
                    await self.process([_as_processing_failure(item, error)])

    async def _until_committed(
        self, items: Sequence[Item], stopping: asyncio.Event
    ) -> BaseException | None:
        """Retry `process(items)` with backoff until it commits (None), or until it failed
        `max_attempts` times with a non-transient error (that error). Transient errors are
        retried forever."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.process(items)
                return None
            except asyncio.CancelledError:
                raise
            except Exception as error:
                transient = self._is_transient(error)
                self._observer.batch_failed(error, transient)
                if not transient and attempt >= self._retry.max_attempts:
                    return error
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

    @staticmethod
    async def _sleep_or_stop(delay: float, stopping: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stopping.wait(), timeout=delay)
        except TimeoutError:
            return
        raise Stopping


SCHEDULER = Actor(role=Role.SYSTEM, id="scheduler")
# statuses that close at the end instant (a SUBMITTED one is cancelled by the scheduler, T12)
END_DUE = frozenset({Status.BOOKED, Status.LIVE, Status.PAUSED})


def scheduled_trigger(due: DueTrigger) -> Inbound:
    """A time trigger as the system command the scheduler applies."""
    kind = "start" if due.kind == "start" else "end"
    payload = (
        StartDue(campaign_id=due.campaign_id, due_at=due.due_at)
        if kind == "start"
        else EndDue(campaign_id=due.campaign_id, due_at=due.due_at)
    )
    return Inbound(
        message_id=f"schedule:{kind}:{due.campaign_id}:{due.due_at.isoformat()}",
        type=f"schedule.{kind}_due",
        source=Source(topics.SCHEDULE, -1, -1, str(due.campaign_id).encode(), b""),
        actor=SCHEDULER,
        correlation_id=None,
        campaign_id=due.campaign_id,
        payload=payload,
    )


def settlement_trigger(due: DueSettlement) -> Inbound:
    """A settlement grace that ran out, as the system command the scheduler applies."""
    return Inbound(
        message_id=f"settle:{due.campaign_id}:{due.due_at.isoformat()}",
        type="settlement.due",
        source=Source(topics.SCHEDULE, -1, -1, str(due.campaign_id).encode(), b""),
        actor=SCHEDULER,
        correlation_id=None,
        campaign_id=due.campaign_id,
        payload=SettleCampaign(campaign_id=due.campaign_id, final=False),
    )


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
