"""The second pass over the campaign rules (issue 13) on real Kafka, Postgres and SMTP:
initial holds of a duplicate, ad units of the product, the configured VAT, one display
status for events and emails, an unreviewed campaign whose end passes, the new emails and the
announcement of duplicated creatives."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Harness
from tests.support.contract import Driver, iso, product_event
from tests.support.kafka_io import Received
from tests.support.smtp import SmtpServer
from tests.support.util import eventually, seed_product

pytestmark = pytest.mark.e2e

CONTENT = {
    "file_url": "https://cdn.example.com/b.png",
    "destination_url": "https://shop.example.com/sale",
    "text": "50% off",
}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.up()
    yield server
    server.down()


@pytest.fixture
async def drv(harness: Harness, smtp: SmtpServer) -> Driver:
    await harness.start_worker(
        scheduler_tick_s=0.2,
        vat_rate="0.20",
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_from="Ad platform <ads@example.com>",
        notifier_poll_interval_s=0.1,
    )
    await seed_product(harness)
    return Driver(harness)


def of(drv: Driver, type_: str, cid: str) -> list[Received]:
    return drv.h.down.of_type(type_, cid)


async def wait(drv: Driver, cid: str, type_: str, check: Any = None, count: int = 1) -> Any:
    got = await drv.h.down.wait_for(
        lambda r: (
            r.type == type_ and r.event.get("subject") == cid and (check is None or check(r.data))
        ),
        count=count,
    )
    return got[-1].data


async def booked(drv: Driver, **overrides: Any) -> str:
    cid = await drv.create(**overrides)
    await drv.do("campaign.submit", cid)
    got = await drv.do("review.campaign_approved", cid, as_="publisher")
    assert got.data["to"] == "BOOKED", got.data
    return cid


async def mails_to(smtp: SmtpServer, subject_part: str) -> list[Any]:
    async def found() -> list[Any]:
        return [d for d in smtp.delivered if subject_part in d.subject]

    return list(await eventually(found, timeout=30))


async def test_the_configured_vat_rate_is_charged(drv: Driver) -> None:
    cid = await drv.create(billing_type="card", budget={"amount": "100.00", "currency": "EUR"})
    await drv.do("campaign.submit", cid)
    charge = await wait(drv, cid, "payment.charge_requested")
    assert charge["amount"] == {"amount": "120.00", "currency": "EUR"}  # VAT 0.20


async def test_a_duplicate_of_a_campaign_whose_product_is_not_buyable_does_not_serve(
    drv: Driver,
) -> None:
    cid = await booked(drv)
    await drv.h.up.send("campaign.catalog", product_event(buyable=False))
    await wait(drv, cid, "campaign.serving_changed", lambda d: "product_not_buyable" in d["holds"])
    copy = str(uuid.uuid4())
    await drv.send("campaign.duplicate", cid, {"new_campaign_id": copy})
    serving = await wait(drv, copy, "campaign.serving_changed")
    assert "product_not_buyable" in serving["holds"] and serving["serving"] is False
    [row] = await drv.h.fetch(
        "SELECT holds::text FROM campaign_holds WHERE campaign_id=$1", uuid.UUID(copy)
    )
    assert "product_not_buyable" in row["holds"]


async def test_a_booked_campaign_with_a_hold_shows_the_hold_not_ready(drv: Driver) -> None:
    cid = await booked(drv)
    await drv.h.up.send("campaign.catalog", product_event(buyable=False))
    shown = await wait(
        drv, cid, "campaign.serving_changed", lambda d: "product_not_buyable" in d["holds"]
    )
    assert shown["display_status"] == "ASIN not buyable"
    got = await drv.do("campaign.pause", cid)
    assert got.data["display_status"] == "ASIN not buyable"  # paused for that reason


async def test_emails_and_events_show_the_same_display_status(
    drv: Driver, smtp: SmtpServer
) -> None:
    cid = await drv.create(billing_type="card")  # approved before its charge is confirmed
    await drv.do("campaign.submit", cid)
    approved = await drv.do("review.campaign_approved", cid, as_="publisher")
    assert approved.data["display_status"] == "Activating"
    [note] = await drv.h.down.wait_for(
        lambda r: r.type == "notification.requested" and r.event.get("subject") == cid
    )
    assert note.data["template_data"]["display_status"] == "Activating"
    [mail] = await mails_to(smtp, "was approved")
    assert "Activating" in mail.message.get_body(("plain",)).get_content()


async def test_a_creative_with_an_ad_unit_its_product_lacks_is_refused(drv: Driver) -> None:
    cid = await drv.create()
    creative = {"creative_id": "cr-1", "name": "n", "ad_unit_id": "unit-300x250"}
    got = await drv.do("creative.create", cid, {**creative, "content": CONTENT})
    assert got.type == "command.rejected" and got.data["code"] == "validation_failed"
    assert "unit-300x250" in got.data["message"] and "unit-728x90" in got.data["message"]
    ok = await drv.do(
        "creative.create", cid, {**creative, "ad_unit_id": "unit-728x90", "content": CONTENT}
    )
    assert ok.type == "creative.status_changed"
    edit = await drv.do("creative.update", cid, {"creative_id": "cr-1", "ad_unit_id": "unit-x"})
    assert edit.type == "command.rejected" and "unit-x" in edit.data["message"]


async def test_every_duplicated_creative_is_announced(drv: Driver) -> None:
    cid = await drv.create()
    creative = {"creative_id": "cr-1", "name": "n", "ad_unit_id": "unit-728x90"}
    await drv.do("creative.create", cid, {**creative, "content": CONTENT})
    copy = str(uuid.uuid4())
    await drv.send("campaign.duplicate", cid, {"new_campaign_id": copy})
    dup = await wait(drv, copy, "campaign.duplicated")
    [copied] = dup["creatives"]
    announced = await wait(drv, copy, "creative.status_changed")
    assert announced == {
        "campaign_id": copy,
        "creative_id": copied["creative_id"],
        "from": None,
        "to": "UNDER_REVIEW",
        "reason": "duplicated",
    }


async def test_an_unreviewed_campaign_whose_end_passes_is_cancelled_refunded_and_told(
    drv: Driver, smtp: SmtpServer
) -> None:
    now = datetime.now(UTC)
    cid = await drv.create(
        billing_type="card",
        start_at=iso(now - timedelta(minutes=5)),
        end_at=iso(now + timedelta(seconds=4)),
    )
    await drv.do("campaign.submit", cid)
    charge = await wait(drv, cid, "payment.charge_requested")
    await drv.send(
        "payment.charge_succeeded",
        cid,
        {"charge_id": charge["charge_id"], "amount": charge["amount"]},
        as_="system",
    )
    cancelled = await wait(drv, cid, "campaign.status_changed", lambda d: d["to"] == "CANCELLED")
    assert (cancelled["from"], cancelled["reason"]) == ("SUBMITTED", "review_expired")
    refund = await wait(drv, cid, "payment.refund_requested")
    assert refund["amount"] == charge["amount"]  # the whole charge
    [mail] = await mails_to(smtp, "expired before its review")
    assert mail.rcpt_tos == ["ada@example.com"]
    late = await drv.do("review.campaign_approved", cid, as_="publisher")
    assert late.type == "command.rejected"


async def test_publisher_cancel_suspension_and_reinstatement_each_send_one_email(
    drv: Driver, smtp: SmtpServer
) -> None:
    cid = await booked(drv)
    # holds answer with campaign.serving_changed only
    await drv.send("review.campaign_suspended", cid, {"reason": "policy"}, as_="publisher")
    await wait(drv, cid, "campaign.serving_changed", lambda d: "suspended" in d["holds"])
    await drv.send("review.campaign_reinstated", cid, as_="publisher")
    await wait(drv, cid, "notification.requested", lambda d: d["kind"] == "campaign_reinstated")
    penalty = {"amount": "50.00", "currency": "EUR"}
    await drv.do("campaign.cancel", cid, {"reason": "fraud", "penalty": penalty}, as_="publisher")
    for subject in ("was suspended", "was reinstated", "was cancelled by the publisher"):
        [mail] = await mails_to(smtp, subject)
        parts = {p.get_content_type() for p in mail.message.iter_parts()}
        assert parts == {"text/plain", "text/html"}
    [cancel] = await mails_to(smtp, "was cancelled by the publisher")
    assert "50.00 EUR" in cancel.message.get_body(("plain",)).get_content()
    kinds = sorted(r.data["kind"] for r in drv.h.down.of_type("notification.requested", cid))
    assert kinds == [  # the cancel with a penalty settles at once: its statement is told too
        "campaign_cancelled_by_publisher",
        "campaign_reinstated",
        "campaign_review_approved",
        "campaign_suspended",
        "statement_issued",
    ]
    await asyncio.sleep(1)  # nothing more arrives: exactly once
    assert len([d for d in smtp.delivered if "suspended" in d.subject]) == 1
