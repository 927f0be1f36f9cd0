"""Money end to end (issue 6) on real Kafka and Postgres: card and manual billing, spend,
refunds, one statement per campaign, billing holds."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from campaign_worker.entrypoints.cli import main as cli_main
from tests.conftest import Harness
from tests.support.contract import Driver, iso
from tests.support.util import seed_product

pytestmark = pytest.mark.e2e


@pytest.fixture
async def drv(harness: Harness) -> Driver:
    await harness.start_worker(scheduler_tick_s=0.2)
    await seed_product(harness)
    return Driver(harness)


def settlements(drv: Driver, cid: str, type_: str) -> list[dict[str, Any]]:
    return [r.data for r in drv.h.down.of_type(type_, cid) if r.topic == "campaign.settlements"]


async def wait_settlement(drv: Driver, cid: str, type_: str, count: int = 1) -> dict[str, Any]:
    got = await drv.h.down.wait_for(
        lambda r: (
            r.topic == "campaign.settlements" and r.type == type_ and r.event.get("subject") == cid
        ),
        count=count,
    )
    return got[-1].data


async def wait_status(drv: Driver, cid: str, to: str) -> None:
    await drv.h.down.wait_for(
        lambda r: (
            r.type == "campaign.status_changed"
            and r.event.get("subject") == cid
            and r.data["to"] == to
        )
    )


async def paid_card_campaign(drv: Driver, start: datetime, end: datetime) -> tuple[str, str]:
    cid = await drv.create(billing_type="card", start_at=iso(start), end_at=iso(end))
    await drv.do("campaign.submit", cid)
    charge = await wait_settlement(drv, cid, "payment.charge_requested")
    assert charge["amount"] == {"amount": "1100.00", "currency": "EUR"}  # budget + 10% VAT
    await drv.send(
        "payment.charge_succeeded",
        cid,
        {"charge_id": charge["charge_id"], "amount": charge["amount"]},
        as_="system",
    )
    return cid, charge["charge_id"]


async def test_card_campaign_with_300_spent_closes_with_the_spec_statement_and_refund(
    drv: Driver, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    cid, _ = await paid_card_campaign(drv, now - timedelta(minutes=1), now + timedelta(seconds=8))
    await drv.do("review.campaign_approved", cid, as_="publisher")
    await wait_status(drv, cid, "LIVE")
    [live] = await drv.h.fetch(
        "SELECT occurred_at FROM campaign_history WHERE campaign_id=$1 AND to_status='LIVE'",
        uuid.UUID(cid),
    )
    got = await drv.do(
        "delivery.reported",
        cid,
        {
            "period_start": iso(live["occurred_at"]),
            "period_end": iso(live["occurred_at"] + timedelta(seconds=2)),
            "impressions": 5000,
            "clicks": 40,
            "spend": {"amount": "300.00", "currency": "EUR"},
        },
        as_="system",
    )
    assert got.type == "delivery.recorded", got.data
    assert got.data["billable_spend"] == {"amount": "300.00", "currency": "EUR"}
    assert got.data["spent_total"] == {"amount": "300.00", "currency": "EUR"}

    statement = await wait_settlement(drv, cid, "settlement.statement_issued")
    assert statement["billing_type"] == "card"
    assert statement["booked_amount"]["amount"] == "1000.00"
    assert statement["spent_amount"]["amount"] == "300.00"
    assert statement["tax_amount"]["amount"] == "30.00"
    assert statement["refund_amount"]["amount"] == "770.00"
    assert statement["final_amount"]["amount"] == "330.00"
    refund = await wait_settlement(drv, cid, "payment.refund_requested")
    assert refund["amount"] == {"amount": "770.00", "currency": "EUR"}
    rows = await drv.h.fetch(
        "SELECT kind, amount FROM ledger_entries WHERE campaign_id=$1 ORDER BY id", uuid.UUID(cid)
    )
    assert [(r["kind"], str(r["amount"])) for r in rows] == [
        ("charge", "1100.0000"),
        ("spend", "300.0000"),
        ("refund", "770.0000"),
    ]
    assert (
        len(await drv.h.fetch("SELECT 1 FROM statements WHERE campaign_id=$1", uuid.UUID(cid))) == 1
    )
    monkeypatch.setenv("DATABASE_URL", drv.h.database_url)
    assert await asyncio.to_thread(cli_main, ["campaign", "statement", cid]) == 0
    printed = capsys.readouterr().out
    assert "Refund amount" in printed and "770.00 EUR" in printed and "330.00 EUR" in printed
    assert await asyncio.to_thread(cli_main, ["campaign", "show", cid]) == 0
    shown = capsys.readouterr().out
    assert "Ledger (every money movement):" in shown and "spend" in shown


async def test_rejected_card_campaign_is_refunded_in_full(drv: Driver) -> None:
    now = datetime.now(UTC)
    cid, _ = await paid_card_campaign(drv, now + timedelta(days=1), now + timedelta(days=2))
    await drv.do("review.campaign_rejected", cid, {"reason": "no"}, as_="publisher")
    refund = await wait_settlement(drv, cid, "payment.refund_requested")
    assert refund["amount"] == {"amount": "1100.00", "currency": "EUR"}
    assert refund["reason"]
    done = await drv.send(
        "payment.refund_succeeded",
        cid,
        {"refund_id": refund["refund_id"], "amount": refund["amount"]},
        as_="system",
    )
    assert done


async def test_manual_campaign_is_never_charged_and_owes_spent_plus_tax(drv: Driver) -> None:
    now = datetime.now(UTC)
    cid = await drv.create(
        billing_type="manual",
        start_at=iso(now - timedelta(minutes=1)),
        end_at=iso(now + timedelta(seconds=6)),
    )
    await drv.do("campaign.submit", cid)
    await drv.do("review.campaign_approved", cid, as_="publisher")
    await wait_status(drv, cid, "LIVE")
    [live] = await drv.h.fetch(
        "SELECT occurred_at FROM campaign_history WHERE campaign_id=$1 AND to_status='LIVE'",
        uuid.UUID(cid),
    )
    await drv.do(
        "delivery.reported",
        cid,
        {
            "period_start": iso(live["occurred_at"]),
            "period_end": iso(live["occurred_at"] + timedelta(seconds=1)),
            "impressions": 100,
            "clicks": 1,
            "spend": {"amount": "123.45", "currency": "EUR"},
        },
        as_="system",
    )
    statement = await wait_settlement(drv, cid, "settlement.statement_issued")
    assert statement["billing_type"] == "manual"
    assert statement["spent_amount"]["amount"] == "123.45"
    assert statement["tax_amount"]["amount"] == "12.35"  # 12.345 rounded half-up
    assert statement["final_amount"]["amount"] == "135.80"
    assert statement["refund_amount"]["amount"] == "0.00"
    assert not settlements(drv, cid, "payment.charge_requested")
    assert not settlements(drv, cid, "payment.refund_requested")


async def test_charge_failure_sets_billing_error_and_the_campaign_does_not_serve(
    drv: Driver,
) -> None:
    now = datetime.now(UTC)
    cid = await drv.create(
        billing_type="card",
        start_at=iso(now - timedelta(minutes=1)),
        end_at=iso(now + timedelta(days=1)),
    )
    await drv.do("campaign.submit", cid)
    charge = await wait_settlement(drv, cid, "payment.charge_requested")
    await drv.do("review.campaign_approved", cid, as_="publisher")
    await wait_status(drv, cid, "LIVE")
    await drv.send(
        "payment.charge_failed",
        cid,
        {"charge_id": charge["charge_id"], "reason": "card declined"},
        as_="system",
    )
    got = await drv.h.down.wait_for(
        lambda r: (
            r.type == "campaign.serving_changed"
            and r.event.get("subject") == cid
            and "billing_error" in r.data["holds"]
        )
    )
    assert got[-1].data["serving"] is False
    assert got[-1].data["display_status"] == "Billing error"
    await drv.h.down.wait_for(
        lambda r: (
            r.type == "notification.requested"
            and r.data.get("kind") == "billing_error"
            and r.data.get("campaign_id") == cid
        )
    )
    # a later success clears the hold
    await drv.send(
        "payment.charge_succeeded",
        cid,
        {"charge_id": charge["charge_id"], "amount": charge["amount"]},
        as_="system",
    )
    cleared = await drv.h.down.wait_for(
        lambda r: (
            r.type == "campaign.serving_changed"
            and r.event.get("subject") == cid
            and "billing_error" not in r.data["holds"]
            and r.data["display_status"] != "Activating"
        ),
        count=1,
    )
    assert "billing_error" not in cleared[-1].data["holds"]


async def test_payment_facts_only_come_from_the_system(drv: Driver) -> None:
    now = datetime.now(UTC)
    cid = await drv.create(
        billing_type="card",
        start_at=iso(now + timedelta(days=1)),
        end_at=iso(now + timedelta(days=2)),
    )
    await drv.do("campaign.submit", cid)
    charge = await wait_settlement(drv, cid, "payment.charge_requested")
    got = await drv.do(
        "payment.charge_succeeded",
        cid,
        {"charge_id": charge["charge_id"], "amount": charge["amount"]},
    )
    assert got.type == "command.rejected" and got.data["code"] == "forbidden"
