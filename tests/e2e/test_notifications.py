"""Notifications end to end (issue 7, spec §10): real Kafka, real Postgres and a real SMTP
server (aiosmtpd in a thread, answering as each test says). Exactly one email per event,
outages survived, permanent failures not retried, crashes costing at most the one email in
flight, several replicas, STARTTLS and login."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Harness
from tests.support.contract import Driver, create_data, iso
from tests.support.kafka_io import Received
from tests.support.processes import CLI, WorkerProcess
from tests.support.schemas import validate_outgoing
from tests.support.smtp import Delivery, SmtpServer, self_signed_certificate
from tests.support.util import eventually, seed_product

pytestmark = pytest.mark.e2e

FAST = {
    "notifier_poll_interval_s": 0.1,
    "smtp_backoff_initial_s": 0.2,
    "smtp_backoff_max_s": 1.0,
    "smtp_timeout_s": 5.0,
}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.down()


def mail_settings(server: SmtpServer, **extra: Any) -> dict[str, Any]:
    return {
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_from": "Ad platform <ads@example.com>",
        **FAST,
        **extra,
    }


def contact(name: str) -> dict[str, str]:
    return {"name": name.capitalize(), "email": f"{name}@example.com"}


def notes(h: Harness, type_: str) -> list[Received]:
    return [r for r in h.down.of_type(type_) if r.topic == "campaign.notifications"]


async def notification_rows(h: Harness) -> dict[str, Any]:
    rows = await h.fetch(
        "SELECT id, kind, recipient, status, attempts, message_id, last_error, payload"
        " FROM notifications"
    )
    return {r["message_id"]: r for r in rows}


def text_and_html(d: Delivery) -> tuple[str, str]:
    parts = {p.get_content_type(): p.get_content() for p in d.message.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}, d.message
    return parts["text/plain"], parts["text/html"]


def counter(worker: Any, kind: str, outcome: str) -> float:
    return float(worker.metrics.notifications.labels(kind, outcome)._value.get())


async def approved_campaigns(h: Harness, names: list[str]) -> list[str]:
    """One BOOKED campaign per contact name, each phase sent as a burst."""
    drv = Driver(h)
    ids = [str(uuid.uuid4()) for _ in names]
    for type_, as_, status in (
        ("campaign.create", "advertiser", "DRAFT"),
        ("campaign.submit", "advertiser", "SUBMITTED"),
        ("review.campaign_approved", "publisher", "BOOKED"),
    ):
        futures = []
        for cid, name in zip(ids, names, strict=True):
            data = create_data(contact=contact(name)) if type_ == "campaign.create" else None
            topic, event = drv.build(type_, cid, data, as_=as_)
            futures.append(await h.up.send_nowait(topic, event))
        await asyncio.gather(*futures)

        async def reached(status: str = status) -> bool:
            rows = await h.fetch("SELECT count(*) AS n FROM campaigns WHERE status=$1", status)
            return rows[0]["n"] == len(ids)

        await eventually(reached, timeout=30)
    return ids


async def test_each_campaign_kind_sends_exactly_one_email_and_one_requested_and_sent(
    harness: Harness, smtp: SmtpServer
) -> None:
    """T2 review approved, T3 review rejected (with the reason), T5 started, T6 ended."""
    smtp.up()
    worker = await harness.start_worker(scheduler_tick_s=0.2, **mail_settings(smtp))
    await seed_product(harness)
    drv = Driver(harness)
    now = datetime.now(UTC)
    ada = await drv.create(
        title="Spring sale",
        contact=contact("ada"),
        start_at=iso(now + timedelta(seconds=5)),
        end_at=iso(now + timedelta(seconds=8)),
    )
    await drv.do("campaign.submit", ada)
    approve = await drv.send("review.campaign_approved", ada, as_="publisher")
    await drv.answer(approve)
    bob = await drv.create(title="Bold claims", contact=contact("bob"))
    await drv.do("campaign.submit", bob)
    got = await drv.do(
        "review.campaign_rejected", bob, {"reason": "misleading claims"}, as_="publisher"
    )
    assert got.data["to"] == "REJECTED"

    await harness.down.wait_for(
        lambda r: r.type == "notification.sent" and r.topic == "campaign.notifications",
        count=4,
        timeout=30,
    )
    await asyncio.sleep(1.0)  # time for would-be duplicates to show up

    expected = {
        ("ada@example.com", 'Your campaign "Spring sale" was approved'),
        ("ada@example.com", 'Your campaign "Spring sale" is live'),
        ("ada@example.com", 'Your campaign "Spring sale" has ended'),
        ("bob@example.com", 'Your campaign "Bold claims" was not approved'),
    }
    assert len(smtp.delivered) == 4, [d.subject for d in smtp.delivered]
    assert {(d.rcpt_tos[0], d.subject) for d in smtp.delivered} == expected
    assert all(len(d.rcpt_tos) == 1 and d.mail_from == "ads@example.com" for d in smtp.delivered)
    assert set(smtp.by_message_id().values()) == {1}
    by_subject = {d.subject: d for d in smtp.delivered}
    rejected_text, rejected_html = text_and_html(
        by_subject['Your campaign "Bold claims" was not approved']
    )
    assert "misleading claims" in rejected_text and "misleading claims" in rejected_html
    started_text, _ = text_and_html(by_subject['Your campaign "Spring sale" is live'])
    # the display status of the email is the event's: LIVE without an approved creative
    [live] = [
        r for r in harness.down.of_type("campaign.status_changed", ada) if r.data["to"] == "LIVE"
    ]
    assert live.data["display_status"] == "Ad groups not running"
    assert "Ad groups not running (LIVE)" in started_text
    ended_text, _ = text_and_html(by_subject['Your campaign "Spring sale" has ended'])
    assert "Ended (CLOSED)" in ended_text and "stopped delivering ads" in ended_text
    approved = by_subject['Your campaign "Spring sale" was approved']
    assert approved.message["From"] == "Ad platform <ads@example.com>"

    rows = await notification_rows(harness)
    assert set(rows) == set(smtp.by_message_id())  # the Message-ID is the row's
    assert {(r["kind"], r["status"], r["attempts"]) for r in rows.values()} == {
        ("campaign_review_approved", "sent", 1),
        ("campaign_started", "sent", 1),
        ("campaign_ended", "sent", 1),
        ("campaign_review_rejected", "sent", 1),
    }
    requested, sent = notes(harness, "notification.requested"), notes(harness, "notification.sent")
    ids = {str(r["id"]) for r in rows.values()}
    assert sorted(r.data["notification_id"] for r in requested) == sorted(ids)
    assert sorted(r.data["notification_id"] for r in sent) == sorted(ids)
    assert notes(harness, "notification.failed") == []
    for r in requested + sent:
        validate_outgoing(r.event)
    [req] = [r for r in requested if r.data["kind"] == "campaign_review_approved"]
    assert req.event["causationid"] == approve["id"] and req.event["subject"] == ada
    assert req.data["to"] == "ada@example.com" and req.data["campaign_id"] == ada
    assert req.data["template_data"]["title"] == "Spring sale"
    [done] = [s for s in sent if s.data["notification_id"] == req.data["notification_id"]]
    assert (done.data["attempts"], done.data["error"]) == (1, None)
    assert done.event["causationid"] == req.event["id"]
    for kind in ("campaign_review_approved", "campaign_started", "campaign_ended"):
        assert counter(worker, kind, "requested") == counter(worker, kind, "sent") == 1


async def test_smtp_down_for_a_while_then_up_ends_with_every_email_sent_once(
    harness: Harness, smtp: SmtpServer
) -> None:
    """Refused connections, then 4xx answers: retried with backoff until delivered."""
    worker = await harness.start_worker(**mail_settings(smtp, smtp_max_attempts=100))
    await seed_product(harness)
    await approved_campaigns(harness, ["ann", "ben", "cy"])

    async def all_tried_and_failed() -> bool:
        rows = (await notification_rows(harness)).values()
        return len(rows) == 3 and all(
            r["status"] == "pending" and r["attempts"] >= 1 and r["last_error"] for r in rows
        )

    await eventually(all_tried_and_failed, timeout=30)
    await asyncio.sleep(1.0)  # down for a while
    assert smtp.delivered == [] and notes(harness, "notification.sent") == []
    smtp.data_replies = ["451 4.3.0 Try again later"] * 2  # up, but busy at first
    smtp.up()

    await harness.down.wait_for(
        lambda r: r.type == "notification.sent" and r.topic == "campaign.notifications",
        count=3,
        timeout=30,
    )
    await asyncio.sleep(1.0)
    assert sorted(d.rcpt_tos[0] for d in smtp.delivered) == [
        "ann@example.com",
        "ben@example.com",
        "cy@example.com",
    ]
    assert set(smtp.by_message_id().values()) == {1}
    assert smtp.data_attempts == 5  # 2 answered 451, then 3 accepted
    rows = (await notification_rows(harness)).values()
    assert {r["status"] for r in rows} == {"sent"}
    assert all(r["attempts"] >= 2 for r in rows)
    sent = notes(harness, "notification.sent")
    assert len({s.data["notification_id"] for s in sent}) == len(sent) == 3
    assert all(s.data["attempts"] >= 2 for s in sent)
    assert notes(harness, "notification.failed") == []
    assert counter(worker, "campaign_review_approved", "retried") >= 3


async def test_a_550_ends_in_notification_failed_after_one_attempt(
    harness: Harness, smtp: SmtpServer
) -> None:
    smtp.rcpt_reply["nobody@example.com"] = "550 5.1.1 <nobody@example.com>: no such user"
    smtp.up()
    worker = await harness.start_worker(**mail_settings(smtp))
    await seed_product(harness)
    await approved_campaigns(harness, ["nobody", "ada"])

    [failed] = await harness.down.wait_for(
        lambda r: r.type == "notification.failed" and r.topic == "campaign.notifications",
        timeout=30,
    )
    await eventually(lambda: _true(len(smtp.to("ada@example.com")) == 1), timeout=30)
    await asyncio.sleep(2.0)  # polling every 0.1 s: a retry storm would show here
    validate_outgoing(failed.event)
    assert failed.data["attempts"] == 1
    assert "550" in failed.data["error"] and "no such user" in failed.data["error"]
    assert smtp.rcpt_attempts.count("nobody@example.com") == 1
    assert smtp.to("nobody@example.com") == []
    rows = {r["recipient"]: r for r in (await notification_rows(harness)).values()}
    bad = rows["nobody@example.com"]
    assert (bad["status"], bad["attempts"]) == ("failed", 1)
    assert "550" in bad["last_error"]
    assert failed.data["notification_id"] == str(bad["id"])
    assert (rows["ada@example.com"]["status"], rows["ada@example.com"]["attempts"]) == ("sent", 1)
    assert len(notes(harness, "notification.failed")) == 1
    assert counter(worker, "campaign_review_approved", "failed") == 1
    assert counter(worker, "campaign_review_approved", "retried") == 0


async def _true(value: bool) -> bool:
    return value


async def test_killing_the_worker_between_sending_and_recording_resends_only_that_email(
    harness: Harness, smtp: SmtpServer
) -> None:
    """Five pending notifications; the worker process is killed (SIGKILL) after the SMTP
    server has the third email and before the worker can record it. Two were recorded, the
    third is still pending, two were never touched; after a restart every email has arrived,
    the third twice (same Message-ID), the others once."""
    smtp.up()
    writer = await harness.start_worker(notifier_enabled=False)  # requests, sends nothing
    await seed_product(harness)
    await approved_campaigns(harness, ["c0", "c1", "c2", "c3", "c4"])
    await harness.stop_worker(writer)
    assert [r["status"] for r in (await notification_rows(harness)).values()] == ["pending"] * 5

    env = {
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "SMTP_FROM": "ads@example.com",
        "CAMPAIGN_WORKER_NOTIFIER_POLL_INTERVAL_S": "0.1",
    }
    first = WorkerProcess(harness, **env)
    killed = threading.Event()

    def kill_on_the_third(delivery: Delivery) -> None:  # in the SMTP server's thread
        if len(smtp.delivered) == 3 and not killed.is_set():
            killed.set()
            assert first.proc is not None
            os.kill(first.proc.pid, signal.SIGKILL)  # the server has it; no 250 reaches it

    smtp.on_data = kill_on_the_third
    # started by hand: it may die of the kill before it would report ready
    first.proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        "--no-migrate",
        env=first.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    first._drain = asyncio.create_task(first._read())
    try:
        code = await asyncio.wait_for(first.proc.wait(), 60)
    finally:
        if first.proc.returncode is None:
            first.proc.kill()
            await first.proc.wait()
    assert killed.is_set() and code == -signal.SIGKILL, first.tail()
    smtp.on_data = None

    in_flight = smtp.delivered[2].message_id
    recorded = [d.message_id for d in smtp.delivered[:2]]
    rows = await notification_rows(harness)
    assert [rows[m]["status"] for m in recorded] == ["sent", "sent"]
    assert (rows[in_flight]["status"], rows[in_flight]["attempts"]) == ("pending", 0)
    untouched = [m for m in rows if m not in recorded and m != in_flight]
    assert [(rows[m]["status"], rows[m]["attempts"]) for m in untouched] == [("pending", 0)] * 2
    # the window was the one message in flight: nothing else is pending-but-delivered
    assert [m for m, r in rows.items() if r["status"] == "pending" and m in recorded] == []

    second = WorkerProcess(harness, **env)
    await second.start()
    try:

        async def all_sent() -> bool:
            rows = (await notification_rows(harness)).values()
            return {r["status"] for r in rows} == {"sent"}

        await eventually(all_sent, timeout=60)
        await harness.down.wait_for(
            lambda r: r.type == "notification.sent" and r.topic == "campaign.notifications",
            count=5,
            timeout=30,
        )
        await asyncio.sleep(1.0)
    finally:
        assert await second.stop() == 0, second.tail()
    counts = smtp.by_message_id()
    assert len(counts) == 5 and counts[in_flight] == 2
    assert all(n == 1 for m, n in counts.items() if m != in_flight)
    # the killed relay may publish a row twice (at least once; same CloudEvent id, which
    # consumers dedupe by): one distinct `notification.sent` per notification
    sent = {s.event["id"]: s for s in notes(harness, "notification.sent")}.values()
    assert len(sent) == len({s.data["notification_id"] for s in sent}) == 5
    rows = await notification_rows(harness)
    assert rows[in_flight]["attempts"] == 1  # the attempt that was never recorded is not counted


async def test_two_replicas_send_each_email_once_and_skip_a_row_another_holds(
    harness: Harness, smtp: SmtpServer
) -> None:
    smtp.up()
    writer = await harness.start_worker(notifier_enabled=False)
    await seed_product(harness)
    await approved_campaigns(harness, [f"r{i}" for i in range(12)])
    await harness.stop_worker(writer)

    # another sender holds one row (as a replica does while its email is in flight)
    conn = await harness.db()
    tx = conn.transaction()
    await tx.start()
    held = await conn.fetchrow(
        "SELECT message_id FROM notifications ORDER BY next_attempt_at LIMIT 1 FOR UPDATE"
    )
    try:
        one = await harness.start_worker(**mail_settings(smtp))
        two = await harness.start_worker(**mail_settings(smtp))
        await eventually(lambda: _true(len(smtp.delivered) >= 11), timeout=30)
        await asyncio.sleep(1.0)
        assert len(smtp.delivered) == 11 and held["message_id"] not in smtp.by_message_id()
    finally:
        await tx.rollback()
        await conn.close()
    await eventually(lambda: _true(len(smtp.delivered) >= 12), timeout=30)
    await asyncio.sleep(1.0)
    counts = smtp.by_message_id()
    assert len(counts) == 12 and set(counts.values()) == {1}
    total = sum(counter(w, "campaign_review_approved", "sent") for w in (one, two))
    assert total == 12


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_starttls_and_login_from_the_smtp_settings(harness: Harness, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer(tls_context=context, credentials=("mailer", "s3cret"))
    server.up()
    try:
        await harness.start_worker(
            **mail_settings(
                server,
                smtp_starttls=True,
                smtp_username="mailer",
                smtp_password="s3cret",
                smtp_cafile=str(cert),
            )
        )
        await seed_product(harness)
        await approved_campaigns(harness, ["tls"])
        await harness.down.wait_for(
            lambda r: r.type == "notification.sent" and r.topic == "campaign.notifications",
            timeout=30,
        )
        [d] = server.delivered
        assert d.tls and d.login == "mailer"
        assert d.rcpt_tos == ["tls@example.com"]
    finally:
        server.down()
