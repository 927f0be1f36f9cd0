"""Money end to end (issues 6 and 13) on real Kafka and Postgres: card and manual billing,
spend, refunds, one statement per campaign after the final report or the settlement grace,
billing holds and charge retries, penalties refused whole, the low-relevance stop, and the
statement, refund and stop emails over SMTP."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from campaign_worker.entrypoints.cli import main as cli_main
from tests.conftest import Harness
from tests.support.contract import Driver, iso
from tests.support.smtp import SmtpServer
from tests.support.util import eventually, seed_product

pytestmark = pytest.mark.e2e


@pytest.fixture
async def drv(harness: Harness) -> Driver:
    # a short settlement grace: these tests wait for statements without a final report
    await harness.start_worker(scheduler_tick_s=0.2, settlement_grace_s=1)
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


async def wait_notification(drv: Driver, cid: str, kind: str) -> None:
    await drv.h.down.wait_for(
        lambda r: (
            r.type == "notification.requested"
            and r.data.get("kind") == kind
            and r.data.get("campaign_id") == cid
        )
    )


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
    await wait_notification(drv, cid, "billing_error")
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


# ---------------------------------------------------------------------------- issue 13


async def started(harness: Harness, **settings: Any) -> Driver:
    await harness.start_worker(scheduler_tick_s=0.2, **settings)
    await seed_product(harness)
    return Driver(harness)


async def live_at(drv: Driver, cid: str) -> datetime:
    await wait_status(drv, cid, "LIVE")
    [live] = await drv.h.fetch(
        "SELECT occurred_at FROM campaign_history WHERE campaign_id=$1 AND to_status='LIVE'",
        uuid.UUID(cid),
    )
    return live["occurred_at"]  # type: ignore[no-any-return]


def report(
    start: datetime, end: datetime, spend: str, impressions: int = 100, clicks: int = 1
) -> Any:
    return {
        "period_start": iso(start),
        "period_end": iso(end),
        "impressions": impressions,
        "clicks": clicks,
        "spend": {"amount": spend, "currency": "EUR"},
    }


def requested_kinds(drv: Driver, cid: str) -> list[str]:
    return [
        r.data["kind"]
        for r in drv.h.down.of_type("notification.requested", cid)
        if r.data.get("campaign_id") == cid
    ]


async def test_statement_waits_for_delivery_final_and_the_last_hour_is_billable(
    harness: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    drv = await started(harness)  # the default grace: an hour, only delivery.final settles
    now = datetime.now(UTC)
    cid, _ = await paid_card_campaign(drv, now - timedelta(minutes=1), now + timedelta(seconds=6))
    await drv.do("review.campaign_approved", cid, as_="publisher")
    live = await live_at(drv, cid)
    await wait_status(drv, cid, "CLOSED")
    [end] = await drv.h.fetch("SELECT end_at FROM campaigns WHERE id=$1", uuid.UUID(cid))
    # the ad server's report for the last period arrives after the close: still billable
    got = await drv.do(
        "delivery.reported", cid, report(live, end["end_at"], "300.00"), as_="system"
    )
    assert got.type == "delivery.recorded", got.data
    assert got.data["billable_spend"] == {"amount": "300.00", "currency": "EUR"}
    assert settlements(drv, cid, "settlement.statement_issued") == []
    assert settlements(drv, cid, "payment.refund_requested") == []
    final = await drv.send("delivery.final", cid, as_="system")
    statement = await wait_settlement(drv, cid, "settlement.statement_issued")
    assert statement["spent_amount"]["amount"] == "300.00"
    assert statement["refund_amount"]["amount"] == "770.00"
    refund = await wait_settlement(drv, cid, "payment.refund_requested")
    assert refund["amount"] == {"amount": "770.00", "currency": "EUR"}
    caused = [
        r
        for r in drv.h.down.of_type("settlement.statement_issued", cid)
        if r.event.get("causationid") == final["id"]
    ]
    assert len(caused) == 1
    # a report after the statement: non-billable (after_settlement), kept, counted, shown
    late = await drv.do(
        "delivery.reported",
        cid,
        report(end["end_at"] - timedelta(seconds=1), end["end_at"], "12.00"),
        as_="system",
    )
    assert late.data["non_billable_reason"] == "after_settlement"
    assert late.data["billable_spend"]["amount"] == "0.00"
    [worker] = drv.h.workers
    assert (
        worker.metrics.registry.get_sample_value(
            "campaign_worker_deliveries_after_settlement_total"
        )
        == 1
    )
    [stored] = await drv.h.fetch(
        "SELECT document->'spent'->>'amount' AS spent FROM statements WHERE campaign_id=$1",
        uuid.UUID(cid),
    )
    assert stored["spent"] == "300.00"  # the late report never changes the statement
    monkeypatch.setenv("DATABASE_URL", drv.h.database_url)
    assert await asyncio.to_thread(cli_main, ["campaign", "show", cid]) == 0
    shown = capsys.readouterr().out
    assert "not billable: after_settlement" in shown and "delivery_after_settlement" in shown
    # the statement email went out with its event; the refund email follows its success
    await wait_notification(drv, cid, "statement_issued")
    await drv.send(
        "payment.refund_succeeded",
        cid,
        {"refund_id": refund["refund_id"], "amount": refund["amount"]},
        as_="system",
    )
    await wait_notification(drv, cid, "refund_issued")
    assert requested_kinds(drv, cid).count("statement_issued") == 1


async def test_settlement_grace_issues_the_statement_without_a_final_report(
    harness: Harness,
) -> None:
    drv = await started(harness, settlement_grace_s=2)
    now = datetime.now(UTC)
    cid = await drv.create(
        billing_type="manual",
        start_at=iso(now - timedelta(minutes=1)),
        end_at=iso(now + timedelta(seconds=4)),
    )
    await drv.do("campaign.submit", cid)
    await drv.do("review.campaign_approved", cid, as_="publisher")
    live = await live_at(drv, cid)
    await drv.do(
        "delivery.reported", cid, report(live, live + timedelta(seconds=1), "123.45"), as_="system"
    )
    await wait_status(drv, cid, "CLOSED")
    [closed] = await drv.h.fetch(
        "SELECT occurred_at FROM campaign_history WHERE campaign_id=$1 AND to_status='CLOSED'",
        uuid.UUID(cid),
    )
    statement = await wait_settlement(drv, cid, "settlement.statement_issued")
    [issued] = await drv.h.fetch(
        "SELECT issued_at FROM statements WHERE campaign_id=$1", uuid.UUID(cid)
    )
    assert issued["issued_at"] >= closed["occurred_at"] + timedelta(seconds=2)
    assert statement["final_amount"]["amount"] == "135.80"
    # the ad server's final report after it changes nothing
    await drv.send("delivery.final", cid, as_="system")
    await asyncio.sleep(1)
    assert len(settlements(drv, cid, "settlement.statement_issued")) == 1


async def test_publisher_penalty_above_what_can_be_collected_is_refused_saying_the_maximum(
    drv: Driver,
) -> None:
    now = datetime.now(UTC)
    cid, _ = await paid_card_campaign(drv, now + timedelta(days=1), now + timedelta(days=2))
    await drv.do("review.campaign_approved", cid, as_="publisher")
    got = await drv.do(
        "campaign.cancel",
        cid,
        {"reason": "policy", "penalty": {"amount": "1000.01", "currency": "EUR"}},
        as_="publisher",
    )
    assert got.type == "command.rejected" and got.data["code"] == "validation_failed"
    assert "maximum of 1000.00 EUR" in got.data["message"]
    assert (await drv.status(cid))[0] == "BOOKED"  # nothing applied
    ok = await drv.do(
        "campaign.cancel",
        cid,
        {"reason": "policy", "penalty": {"amount": "1000.00", "currency": "EUR"}},
        as_="publisher",
    )
    assert ok.type == "campaign.status_changed"
    assert ok.data["penalty"] == {"amount": "1000.00", "currency": "EUR"}
    statement = await wait_settlement(drv, cid, "settlement.statement_issued")
    assert statement["penalty_amount"] == {"amount": "1000.00", "currency": "EUR"}


async def test_failed_card_charge_is_retried_by_the_advertiser_and_its_success_clears_the_hold(
    drv: Driver,
) -> None:
    now = datetime.now(UTC)
    cid = await drv.create(
        billing_type="card",
        start_at=iso(now - timedelta(minutes=1)),
        end_at=iso(now + timedelta(days=1)),
    )
    await drv.do("campaign.submit", cid)
    first = await wait_settlement(drv, cid, "payment.charge_requested")
    early = await drv.do("campaign.retry_charge", cid)
    assert early.type == "command.rejected" and early.data["code"] == "invalid_transition"
    await drv.do("review.campaign_approved", cid, as_="publisher")
    await wait_status(drv, cid, "LIVE")
    await drv.send(
        "payment.charge_failed",
        cid,
        {"charge_id": first["charge_id"], "reason": "card declined"},
        as_="system",
    )
    await drv.h.down.wait_for(
        lambda r: (
            r.type == "campaign.serving_changed"
            and r.event.get("subject") == cid
            and "billing_error" in r.data["holds"]
        )
    )
    retry = await drv.send("campaign.retry_charge", cid)
    second = await wait_settlement(drv, cid, "payment.charge_requested", count=2)
    assert second["charge_id"] != first["charge_id"]
    assert second["amount"] == first["amount"] == {"amount": "1100.00", "currency": "EUR"}
    [request] = [
        r
        for r in drv.h.down.of_type("payment.charge_requested", cid)
        if r.event.get("causationid") == retry["id"]
    ]
    assert request.data["charge_id"] == second["charge_id"]
    await drv.send(
        "payment.charge_succeeded",
        cid,
        {"charge_id": second["charge_id"], "amount": second["amount"]},
        as_="system",
    )
    cleared = await drv.h.down.wait_for(
        lambda r: (
            r.type == "campaign.serving_changed"
            and r.event.get("subject") == cid
            and "billing_error" not in r.data["holds"]
            and r.data["serving"] is False  # no approved creative yet; the money side is clear
            and r.data["display_status"] not in ("Billing error", "Activating")
        )
    )
    assert "billing_error" not in cleared[-1].data["holds"]


async def test_low_relevance_against_peers_stops_the_campaign_refunds_unused_budget_and_emails(
    harness: Harness,
) -> None:
    smtp = SmtpServer()
    smtp.up()
    try:
        drv = await started(
            harness,
            relevance_min_impressions=1000,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_from="ads@example.com",
            notifier_poll_interval_s=0.1,
        )
        now = datetime.now(UTC)
        window = {
            "start_at": iso(now - timedelta(minutes=1)),
            "end_at": iso(now + timedelta(days=1)),
        }

        async def peer() -> str:
            pid = await drv.create(billing_type="manual", **window)
            await drv.do("campaign.submit", pid)
            await drv.do("review.campaign_approved", pid, as_="publisher")
            live = await live_at(drv, pid)
            got = await drv.do(
                "delivery.reported",
                pid,
                report(live, live, "1.00", impressions=2000, clicks=20),  # 1 %
                as_="system",
            )
            assert got.type == "delivery.recorded"
            return pid

        peers = await asyncio.gather(*(peer() for _ in range(5)))
        assert [(await drv.status(p))[0] for p in peers] == ["LIVE"] * 5
        cid, _ = await paid_card_campaign(drv, now - timedelta(minutes=1), now + timedelta(days=1))
        await drv.do("review.campaign_approved", cid, as_="publisher")
        live = await live_at(drv, cid)
        # 0.2 %: above the 0.1 % floor, below a quarter of the peers' 1 % median
        sent = await drv.send(
            "delivery.reported",
            cid,
            report(live, live, "200.00", impressions=5000, clicks=10),
            as_="system",
        )
        [stopped] = await drv.h.down.wait_for(
            lambda r: (
                r.type == "campaign.status_changed" and r.event.get("causationid") == sent["id"]
            )
        )
        assert (stopped.data["from"], stopped.data["to"], stopped.data["reason"]) == (
            "LIVE",
            "CLOSED",
            "low_relevance",
        )
        [recorded] = drv.h.down.of_type("delivery.recorded", cid)
        assert recorded.data["billable_spend"] == {"amount": "200.00", "currency": "EUR"}
        stored = await drv.h.fetch(
            "SELECT holds FROM campaign_holds WHERE campaign_id=$1", uuid.UUID(cid)
        )
        assert all("low_relevance" not in row["holds"] for row in stored)  # not a hold
        await drv.send("delivery.final", cid, as_="system")
        refund = await wait_settlement(drv, cid, "payment.refund_requested")
        assert refund["amount"] == {"amount": "880.00", "currency": "EUR"}
        assert refund["reason"] == "closed"

        async def mails() -> list[Any]:
            subjects = [d.subject for d in smtp.delivered if d.rcpt_tos == ["ada@example.com"]]
            return (
                subjects
                if any("low relevance" in s for s in subjects)
                and any("Statement" in s for s in subjects)
                else []
            )

        await eventually(mails)
        stop_mails = [d for d in smtp.delivered if "low relevance" in d.subject]
        assert len(stop_mails) == 1
        parts = {p.get_content_type(): p.get_content() for p in stop_mails[0].message.iter_parts()}
        assert set(parts) == {"text/plain", "text/html"}
        for part in parts.values():
            assert "campaign.duplicate" in part and "refine the targeting" in part
            assert "0.200%" in part and "of 5 similar campaigns" in part
        assert requested_kinds(drv, cid).count("low_relevance") == 1
        assert "campaign_ended" not in requested_kinds(drv, cid)
    finally:
        smtp.down()
