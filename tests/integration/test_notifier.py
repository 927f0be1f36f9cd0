"""The notifier against real Postgres with a fake SMTP client (issue 7): the table matches its
migration, outcomes are recorded with their events in one transaction, attempts run out,
invalid addresses never reach SMTP."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosmtplib
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker.adapters.db.tables import metadata, notifications, outbox
from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.adapters.mailer import Mailer
from campaign_worker.adapters.metrics import Metrics
from campaign_worker.adapters.notifier import Notifier
from campaign_worker.config import Settings
from campaign_worker.service.notifications import message_id_for, notification_id
from campaign_worker.service.unit_of_work import NotificationRequest
from tests.support.fake_smtp import FakeSmtp
from tests.support.schemas import validate_outgoing
from tests.support.util import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> Any:
    e = create_async_engine(Settings(database_url=database_url).sqlalchemy_url)
    yield e
    await e.dispose()


def request(to: str = "ada@example.com", kind: str = "campaign_started") -> NotificationRequest:
    cause = str(uuid.uuid4())
    nid = notification_id(cause, to, kind)
    return NotificationRequest(
        id=nid,
        cause_id=cause,
        kind=kind,
        recipient=to,
        subject='Your campaign "T" is live',
        campaign_id=uuid.uuid4(),
        creative_id=None,
        template_data={"title": "T", "contact_name": "Ada"},
        message_id=message_id_for(nid),
        correlation_id="req-1",
        requested_at=datetime.now(UTC) - timedelta(seconds=1),
    )


async def store(engine: AsyncEngine, *requests: NotificationRequest) -> list[NotificationRequest]:
    uow = SqlUnitOfWork(engine)
    async with uow:
        new = await uow.add_notifications(list(requests))
        await uow.commit()
    return new


def notifier(engine: AsyncEngine, script: dict[str, Any] | None = None, **kw: Any) -> Notifier:
    FakeSmtp.instances = []
    mailer = Mailer(
        host="smtp.test",
        port=25,
        sender="ads@example.com",
        client_factory=lambda **k: FakeSmtp(script, **k),
    )
    options: dict[str, Any] = {"backoff_initial_s": 0.001, "backoff_max_s": 0.001}
    options.update(kw)
    return Notifier(engine, mailer, metrics=Metrics(), **options)


async def row(engine: AsyncEngine, nid: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(notifications).where(notifications.c.id == nid))).one()


async def events(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.value).order_by(outbox.c.id))).all()
    return [json.loads(r.value) for r in rows]


async def test_the_table_matches_its_migration(engine: AsyncEngine) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    mine = [c for c in changes if "notifications" in repr(c)]
    assert mine == []


async def test_the_same_cause_recipient_and_kind_is_stored_once(engine: AsyncEngine) -> None:
    n = request()
    assert await store(engine, n) == [n]
    assert await store(engine, n) == []


async def test_sent_is_recorded_with_its_event(engine: AsyncEngine) -> None:
    [n] = await store(engine, request())
    sender = notifier(engine)
    assert await sender.send_one() == "sent"
    assert await sender.send_one() is None  # nothing else due
    r = await row(engine, n.id)
    assert (r.status, r.attempts, r.last_error) == ("sent", 1, None) and r.sent_at is not None
    [ev] = await events(engine)
    validate_outgoing(ev)
    assert ev["type"] == "notification.sent" and ev["causationid"] == str(n.id)
    assert ev["data"] == {"notification_id": str(n.id), "attempts": 1, "error": None}
    assert ev["subject"] == str(n.campaign_id) and ev["correlationid"] == "req-1"
    [(_, _, recipients)] = FakeSmtp.instances[0].sent
    assert recipients == ["ada@example.com"]


async def test_transient_failures_back_off_then_run_out_of_attempts(engine: AsyncEngine) -> None:
    [n] = await store(engine, request())
    sender = notifier(engine, {"send": aiosmtplib.SMTPDataError(451, "try later")}, max_attempts=3)
    assert await sender.send_one() == "retried"
    r = await row(engine, n.id)
    assert (r.status, r.attempts) == ("pending", 1) and "451" in r.last_error
    assert r.next_attempt_at > r.updated_at - timedelta(seconds=1)
    assert await events(engine) == []  # nothing to tell yet
    assert await sender.send_one() == "retried"
    assert await sender.send_one() == "failed"
    r = await row(engine, n.id)
    assert (r.status, r.attempts) == ("failed", 3)
    [ev] = await events(engine)
    validate_outgoing(ev)
    assert ev["type"] == "notification.failed" and ev["data"]["attempts"] == 3
    assert ev["data"]["error"].startswith("gave up after 3 attempts: ")
    assert len(FakeSmtp.instances) == 3


async def test_a_backed_off_row_is_not_due_before_its_time(engine: AsyncEngine) -> None:
    await store(engine, request())
    sender = notifier(
        engine,
        {"connect": aiosmtplib.SMTPConnectError("refused")},
        backoff_initial_s=60,
        backoff_max_s=60,
    )
    assert await sender.send_one() == "retried"
    assert await sender.send_one() is None
    assert not await sender.run_once()  # a round ends at once: nothing due


async def test_an_invalid_address_fails_at_once_without_touching_smtp(engine: AsyncEngine) -> None:
    [n] = await store(engine, request(to="ada@example.com\r\nBcc: x@evil.test"))
    sender = notifier(engine)
    assert await sender.send_one() == "failed"
    r = await row(engine, n.id)
    assert (r.status, r.attempts) == ("failed", 1) and "invalid recipient" in r.last_error
    assert FakeSmtp.instances == []
    [ev] = await events(engine)
    assert ev["type"] == "notification.failed"


async def test_a_round_is_bounded_and_ends_on_a_transient_failure(engine: AsyncEngine) -> None:
    await store(engine, *(request(to=f"u{i}@example.com") for i in range(5)))
    sender = notifier(engine, batch_size=2)
    assert await sender.run_once() is True  # two sent, maybe more due
    assert len(FakeSmtp.instances) == 2
    down = notifier(engine, {"connect": aiosmtplib.SMTPConnectError("refused")}, batch_size=10)
    assert await down.run_once() is False
    assert len(FakeSmtp.instances) == 1  # one try per round while the server is down


async def test_stop_lets_the_email_in_flight_finish_and_takes_no_new_one(
    engine: AsyncEngine,
) -> None:
    first, second = await store(engine, request(to="a@example.com"), request(to="b@example.com"))
    sender = notifier(engine, {"send": 0.3})
    sender.start()
    await eventually(lambda: _true(len(FakeSmtp.instances) == 1), timeout=10, interval=0.01)
    await sender.stop(timeout=5)
    statuses = {(await row(engine, n.id)).status for n in (first, second)}
    assert statuses == {"sent", "pending"}  # the one in flight was recorded, no new one taken
    assert len(FakeSmtp.instances) == 1


async def test_a_send_outliving_the_stop_budget_stays_pending(engine: AsyncEngine) -> None:
    [n] = await store(engine, request())
    sender = notifier(engine, {"send": "hang"})
    sender.start()
    await eventually(lambda: _true(len(FakeSmtp.instances) == 1), timeout=10, interval=0.01)
    await sender.stop(timeout=0.2)
    r = await row(engine, n.id)
    assert (r.status, r.attempts) == ("pending", 0)  # sent again by the next run
    assert await events(engine) == []


async def _true(value: bool) -> bool:
    return value
