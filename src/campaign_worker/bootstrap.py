"""The composition root: the only place where adapters are built and wired. Nothing here
runs at import time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker import topics
from campaign_worker.adapters.db.errors import is_transient
from campaign_worker.adapters.db.migrate import upgrade
from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.adapters.kafka_client import (
    client_kwargs,
    describe_error,
    ensure_topics,
    faststream_security,
    probe,
)
from campaign_worker.adapters.lag import worker_probe
from campaign_worker.adapters.mailer import Mailer
from campaign_worker.adapters.metrics import Metrics
from campaign_worker.adapters.notifier import Notifier
from campaign_worker.adapters.outbox import OutboxRelay
from campaign_worker.config import Settings
from campaign_worker.domain.settlement import MoneyRules
from campaign_worker.entrypoints.http import HttpServer
from campaign_worker.entrypoints.kafka import register_subscriber
from campaign_worker.entrypoints.messages import INBOUND_TYPES
from campaign_worker.entrypoints.scheduler import DueScheduler
from campaign_worker.logs import RedactingFilter, redact
from campaign_worker.service.processor import Processor, RetryPolicy
from campaign_worker.service.routing import check_routes

log = logging.getLogger(__name__)


def build_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,
        connect_args={"timeout": 10, "command_timeout": 60, **settings.postgres_connect_args},
    )


def database_address(settings: Settings) -> str:
    """host:port/db of DATABASE_URL, without the credentials (for log lines)."""
    parts = urlsplit(settings.database_url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


@dataclass
class Worker:
    """Consumers, outbox relay and HTTP server of one process, started and stopped together."""

    settings: Settings
    engine: AsyncEngine
    broker: KafkaBroker
    producer: AIOKafkaProducer
    relay: OutboxRelay
    processor: Processor
    http: HttpServer
    metrics: Metrics
    stopping: asyncio.Event
    scheduler: DueScheduler
    notifier: Notifier | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _startup: asyncio.Task[None] | None = None
    _blocked: asyncio.Event = field(default_factory=asyncio.Event)  # an attempt failed
    _started: set[str] = field(default_factory=set)
    _running: bool = False
    _pending: dict[str, str] = field(
        default_factory=lambda: {"database": "not reached yet", "kafka": "not reached yet"}
    )

    async def start(self, *, migrate: bool = True) -> None:
        """Serve /healthz at once, then reach Postgres and Kafka, each retried with backoff
        and one log line per attempt, and consume once both answer.

        Returns when the worker runs, or as soon as a dependency is found missing: the start
        then goes on in the background (`/readyz` is 503 and names what is missing) until it
        succeeds or `stop()` ends it, so SIGTERM works while waiting."""
        RedactingFilter.add_secrets(self.settings.secret_values())
        await self.http.start()
        self._started.add("http")
        self._startup = asyncio.create_task(self._start(migrate), name="startup")
        blocked = asyncio.create_task(self._blocked.wait())
        try:
            await asyncio.wait({self._startup, blocked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            blocked.cancel()
        if self._startup.done():
            self._startup.result()

    async def _start(self, migrate: bool) -> None:
        db, kafka = database_address(self.settings), self.settings.kafka_bootstrap_servers
        await self._until("database", f"Postgres at {db}", self._database_answers)
        if migrate:
            await self._until("database", f"the migration of Postgres at {db}", self._migrate)
        await self._until("kafka", f"Kafka at {kafka}", self._kafka_answers)
        await self._until(
            "kafka", f"the relay's producer on Kafka at {kafka}", self._start_producer
        )
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        await self._until("kafka", f"the consumers on Kafka at {kafka}", self._start_broker)
        self._tasks.append(
            asyncio.create_task(worker_probe(self.settings, self.metrics).run(), name="lag-probe")
        )
        if self.settings.scheduler_enabled:
            self.scheduler.start()
            self._started.add("scheduler")
        if self.notifier is not None and self.settings.notifier_enabled:
            self.notifier.start()
            self._started.add("notifier")
        tune_gc()  # the startup heap is built: freeze it
        self._running = True
        log.info(
            "campaign-worker running: group %s, topics %s, http :%d",
            self.settings.group_id,
            ", ".join(self.settings.topic(t) for t in topics.INBOUND),
            self.http.port,
        )

    async def _until(self, check: str, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` until it succeeds: exponential backoff with jitter, one line per failure."""
        delay = self.settings.startup_backoff_initial_s
        attempt = 0
        while True:
            attempt += 1
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                reason = redact(describe_error(error))
                self._pending[check] = f"waiting for {what}: {reason}"
                wait = delay * random.uniform(0.8, 1.2)
                log.warning(
                    "waiting for %s (attempt %d): %s; next attempt in %.1fs",
                    what,
                    attempt,
                    reason,
                    wait,
                )
                self._blocked.set()
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.settings.startup_backoff_max_s)
                continue
            if attempt > 1:
                log.info("%s answers (after %d attempts)", what, attempt)
            self._pending[check] = "ok"
            return

    async def _database_answers(self) -> None:
        async with asyncio.timeout(10):
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    async def _migrate(self) -> None:
        log.info("migrating the database schema")
        await upgrade(
            self.settings.sqlalchemy_url, connect_args=self.settings.postgres_connect_args
        )

    async def _kafka_answers(self) -> None:
        await probe(self.settings)
        if self.settings.create_topics:
            async with asyncio.timeout(30):
                await ensure_topics(
                    self.settings,
                    [self.settings.topic(t) for t in topics.INBOUND + topics.OUTBOUND],
                )

    async def _start_producer(self) -> None:
        try:
            async with asyncio.timeout(30):
                await self.producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            raise
        self._started.add("producer")

    async def _start_broker(self) -> None:
        try:
            async with asyncio.timeout(60):
                await self.broker.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.broker.stop()
            raise
        self._started.add("broker")

    async def stop(self) -> None:
        """Graceful: stop intake, let the batch in flight commit, drain the outbox, close.
        Also ends a start still waiting for Postgres or Kafka."""
        self.stopping.set()
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
            await asyncio.gather(self._startup, return_exceptions=True)
        started = self._started
        if self.notifier is not None and "notifier" in started:
            self.notifier.request_stop()  # finishes (and records) only the email in flight
        # budget shares add up to 0.9 of shutdown_timeout_s (25 s by default), so the
        # process exits within the contract's 30 s even when every step uses its share
        timeout = self.settings.shutdown_timeout_s
        if "scheduler" in started:
            await self.scheduler.stop(timeout * 0.1)
        if "broker" in started:
            try:
                await asyncio.wait_for(self.broker.stop(), timeout * 0.4)
            except TimeoutError:
                log.warning("consumers did not stop within %.1fs", timeout * 0.4)
        if self.notifier is not None and "notifier" in started:
            await self.notifier.stop(timeout * 0.1)
        if "producer" in started:
            await self.relay.drain(timeout * 0.2)
        for task in self._tasks:
            task.cancel()
        await self._bounded(asyncio.gather(*self._tasks, return_exceptions=True), 1.0, "tasks")
        if "producer" in started:
            await self._bounded(self.producer.stop(), timeout * 0.1, "producer")
        await self._bounded(self.http.stop(), 1.0, "http server")
        await self._bounded(self.engine.dispose(), 1.0, "database pool")
        self._running = False
        log.info("campaign-worker stopped")

    @staticmethod
    async def _bounded(step: Awaitable[object], seconds: float, what: str) -> None:
        try:
            await asyncio.wait_for(step, seconds)
        except TimeoutError:
            log.warning("%s did not stop within %.1fs; going on", what, seconds)

    async def readiness(self) -> dict[str, str]:
        """ "ok" per check, or what is wrong; while starting, what the start waits for."""
        if not self._running:
            waiting = {**self._pending, "consumers": "starting"}
            return {k: redact(v)[:300] for k, v in waiting.items()}
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(2):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = redact(describe_error(error))[:300]
        try:
            async with asyncio.timeout(2):
                await self.producer.client.fetch_all_metadata()
            checks["kafka"] = "ok"
        except Exception as error:
            checks["kafka"] = redact(describe_error(error))[:300] or "unreachable"
        return checks


def money_rules(settings: Settings) -> MoneyRules:
    """The money rules from the settings (VAT, relevance, settlement grace)."""
    return MoneyRules(
        tax_rate=settings.vat_rate,
        relevance_min_impressions=settings.relevance_min_impressions,
        relevance_min_ctr=settings.relevance_min_ctr,
        relevance_peer_ratio=settings.relevance_peer_ratio,
        settlement_grace=timedelta(seconds=settings.settlement_grace_s),
    )


# The cyclic collector's young-generation threshold: a batch allocates hundreds of thousands
# of short-lived objects (dataclasses, rows, events), and at the default of 700 the collector
# ran thousands of times per batch, older generations every few batches; the mix measured
# 9-12% less worker CPU per command with this (and the startup heap frozen).
GC_THRESHOLDS = (20_000, 50, 100)


def tune_gc() -> None:
    """Move everything built so far (modules, settings, the wiring) out of the collector's
    sight for good, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_worker(settings: Settings) -> Worker:
    # every inbound type's command has its one handler, or the worker does not start
    check_routes(spec.command for spec in INBOUND_TYPES.values())
    metrics = Metrics()
    engine = build_engine(settings)
    stopping = asyncio.Event()
    producer = AIOKafkaProducer(
        **client_kwargs(settings),
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        linger_ms=5,
        # the relay sends one record batch per partition: bigger batches cost less CPU per
        # record (measured 21-25 us at 16 KiB, 16-17 us at 256 KiB; the broker's default
        # message.max.bytes of 1 MiB stays well above)
        max_batch_size=256 * 1024,
        client_id="campaign-worker-relay",
    )
    relay = OutboxRelay(
        engine,
        producer,
        physical_topic=settings.topic,
        metrics=metrics,
        batch_size=settings.relay_batch_size,
        poll_interval_s=settings.relay_poll_interval_s,
        inbox_retention_s=settings.inbox_retention_s,
        inbox_prune_interval_s=settings.inbox_prune_interval_s,
        inbox_prune_batch_size=settings.inbox_prune_batch_size,
    )
    notifier = Notifier(
        engine,
        Mailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            timeout_s=settings.smtp_timeout_s,
            cafile=settings.smtp_cafile,
        ),
        metrics=metrics,
        max_attempts=settings.smtp_max_attempts,
        backoff_initial_s=settings.smtp_backoff_initial_s,
        backoff_max_s=settings.smtp_backoff_max_s,
        batch_size=settings.notifier_batch_size,
        poll_interval_s=settings.notifier_poll_interval_s,
        on_commit=relay.wake,
    )

    def committed() -> None:  # outbox rows and maybe notifications: wake both senders
        relay.wake()
        notifier.wake()

    processor = Processor(
        lambda: SqlUnitOfWork(engine),
        physical_topic=settings.topic,
        is_transient=is_transient,
        retry=RetryPolicy(
            max_attempts=settings.processing_max_attempts,
            backoff_max_s=settings.retry_backoff_max_s,
        ),
        observer=metrics,
        on_commit=committed,
        rules=money_rules(settings),
        publish_state=settings.publish_state,
    )
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=faststream_security(settings),
        graceful_timeout=settings.shutdown_timeout_s * 0.6,
        middlewares=[KafkaPrometheusMiddleware(registry=metrics.registry)],
        client_id="campaign-worker",
        log_level=logging.DEBUG,  # per-batch access lines are debug detail, not operations news
    )
    register_subscriber(broker, settings, processor, stopping)
    worker = Worker(
        settings=settings,
        engine=engine,
        broker=broker,
        producer=producer,
        relay=relay,
        processor=processor,
        http=HttpServer(
            settings.http_host, settings.http_port, metrics.registry, lambda: worker.readiness()
        ),
        metrics=metrics,
        stopping=stopping,
        scheduler=DueScheduler(
            processor,
            metrics,
            tick_s=settings.scheduler_tick_s,
            batch_size=settings.scheduler_batch_size,
        ),
        notifier=notifier,
    )
    return worker
