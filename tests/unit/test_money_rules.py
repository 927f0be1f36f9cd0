"""The money rules of issue 13 through the processor (fake unit of work, real handlers and
translation): the statement waits for `delivery.final` or the settlement grace, a report
after it is non-billable and counted, penalties are refused whole, a failed charge can be
retried, low relevance stops the campaign; and the statement and refund emails."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from campaign_worker.adapters.mailer import Outgoing, Templates, build_message
from campaign_worker.adapters.metrics import Metrics
from campaign_worker.domain.ledger import Ledger
from campaign_worker.domain.model import Status
from campaign_worker.domain.serving import Hold
from campaign_worker.domain.settlement import Account, MoneyRules
from campaign_worker.service.processor import Processor, RetryPolicy
from tests.unit.fakes import FakeUnitOfWork, Store, translated

START = datetime(2030, 1, 1, tzinfo=UTC)
END = datetime(2030, 2, 1, tzinfo=UTC)
GRACE = timedelta(hours=1)
ROLES = {
    "campaign": ("advertiser", "adv-1"),
    "review": ("publisher", "pub-1"),
    "payment": ("system", "payments"),
    "delivery": ("system", "ad-server"),
    "catalog": ("publisher", "pub-1"),
}


@dataclass
class Clock:
    now: datetime = START - timedelta(days=10)

    def __call__(self) -> datetime:
        return self.now


class World:
    """A store, a processor on it with a settable clock, and message helpers."""

    def __init__(self, **rules: Any) -> None:
        self.store = Store()
        self.clock = Clock()
        self.metrics = Metrics(CollectorRegistry())
        self.rules = MoneyRules(settlement_grace=GRACE, **rules)
        self.processor = Processor(
            lambda: FakeUnitOfWork(self.store),
            physical_topic=lambda t: t,
            is_transient=lambda e: False,
            retry=RetryPolicy(max_attempts=1),
            clock=self.clock,
            observer=self.metrics,
            rules=self.rules,
        )
        self.offset = 0

    async def send(
        self, type_: str, subject: str, data: dict[str, Any] | None = None, **envelope: Any
    ) -> str:
        prefix = type_.split(".")[0]
        role, actor = ROLES[prefix]
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/t",
            "type": type_,
            "subject": subject,
            "actorrole": role,
            "actorid": actor,
            "data": data or {},
            **envelope,
        }
        self.offset += 1
        await self.processor.process([translated(event, self.offset)])
        return str(event["id"])

    def out(self, type_: str, cid: str | None = None) -> list[dict[str, Any]]:
        found = []
        for m in self.store.outbox:
            body = json.loads(m.value)
            if body["type"] == type_ and (cid is None or body.get("subject") == cid):
                found.append(body["data"])
        return found

    def caused_by(self, message_id: str) -> list[dict[str, Any]]:
        bodies = [json.loads(m.value) for m in self.store.outbox]
        return [
            b
            for b in bodies
            if b.get("causationid") == message_id and b["type"] != "campaign.state"
        ]

    def emails(self, kind: str, cid: str) -> list[Any]:
        return [
            n
            for n in self.store.notifications.values()
            if n.kind == kind and str(n.campaign_id) == cid
        ]

    def campaign(self, cid: str) -> Any:
        return self.store.campaigns[uuid.UUID(cid)]

    def account(self, cid: str) -> Account:
        return self.store.accounts[uuid.UUID(cid)]

    async def product(self) -> None:
        await self.send(
            "catalog.ad_product_upserted",
            "p",
            {
                "ad_product_id": "p",
                "name": "P",
                "unit_ids": ["u"],
                "unit_set_valid": True,
                "buyable": True,
            },
        )

    async def live_campaign(self, billing: str = "card", budget: str = "1000.00") -> str:
        cid = str(uuid.uuid4())
        await self.send(
            "campaign.create",
            cid,
            {
                "advertiser_id": "adv-1",
                "title": "Winter sale",
                "ad_product_id": "p",
                "budget": {"amount": budget, "currency": "EUR"},
                "billing_type": billing,
                "start_at": START.isoformat(),
                "end_at": END.isoformat(),
                "contact": {"name": "Ada", "email": "ada@example.com"},
            },
        )
        await self.send("campaign.submit", cid)
        if billing == "card":
            (charge,) = self.out("payment.charge_requested", cid)
            await self.send("payment.charge_succeeded", cid, charge)
        await self.send("review.campaign_approved", cid)
        self.clock.now = START
        assert await self.processor.process_due(100) >= 1
        assert self.campaign(cid).status is Status.LIVE
        return cid

    async def deliver(
        self,
        cid: str,
        spend: str,
        start: datetime,
        end: datetime,
        impressions: int = 1000,
        clicks: int = 10,
    ) -> str:
        return await self.send(
            "delivery.reported",
            cid,
            {
                "period_start": start.isoformat(),
                "period_end": end.isoformat(),
                "impressions": impressions,
                "clicks": clicks,
                "spend": {"amount": spend, "currency": "EUR"},
            },
        )

    async def close(self, cid: str) -> None:
        self.clock.now = END + timedelta(seconds=1)
        await self.processor.process_due(100)
        assert self.campaign(cid).status is Status.CLOSED


def metric(world: World, name: str, **labels: str) -> float:
    value = world.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# ------------------------------------------------------------------ item 10


async def test_statement_waits_for_the_ad_servers_final_report() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    await w.close(cid)
    assert w.out("settlement.statement_issued", cid) == []
    assert w.out("payment.refund_requested", cid) == []
    assert w.account(cid).settle_at == END + timedelta(seconds=1) + GRACE
    # the last hour arrives after the end, before the statement: billable
    w.clock.now = END + timedelta(minutes=10)
    await w.deliver(cid, "300.00", END - timedelta(hours=1), END)
    (recorded,) = w.out("delivery.recorded", cid)
    assert recorded["billable_spend"] == {"amount": "300.00", "currency": "EUR"}
    final = await w.send("delivery.final", cid)
    (statement,) = w.out("settlement.statement_issued", cid)
    assert statement["spent_amount"]["amount"] == "300.00"
    assert statement["refund_amount"]["amount"] == "770.00"
    (refund,) = w.out("payment.refund_requested", cid)
    assert refund["amount"] == {"amount": "770.00", "currency": "EUR"}
    assert {b["type"] for b in w.caused_by(final)} == {
        "settlement.statement_issued",
        "payment.refund_requested",
        "notification.requested",  # the statement email
    }
    (email,) = w.emails("statement_issued", cid)
    data = email.template_data
    assert (data["spent"], data["tax"], data["final"], data["refund"]) == (
        "300.00 EUR",
        "30.00 EUR",
        "330.00 EUR",
        "770.00 EUR",
    )
    assert "770.00 EUR of your card payment of 1100.00 EUR is refunded" in data["statement_outcome"]
    assert w.account(cid).settle_at is None
    # the grace tick later finds nothing to settle; a second final report changes nothing
    w.clock.now = END + 2 * GRACE
    assert await w.processor.process_due_settlements(100) == 0
    again = await w.send("delivery.final", cid)
    assert w.caused_by(again) == [] and len(w.store.statements) == 1


async def test_settlement_grace_issues_the_statement_when_no_final_report_comes() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign(billing="manual")
    await w.deliver(cid, "123.45", START, START + timedelta(hours=1))
    await w.close(cid)
    w.clock.now = END + GRACE  # not due yet: one second short
    assert await w.processor.process_due_settlements(100) == 0
    w.clock.now = END + GRACE + timedelta(seconds=1)
    assert await w.processor.process_due_settlements(100) == 1
    (statement,) = w.out("settlement.statement_issued", cid)
    assert statement["final_amount"]["amount"] == "135.80"
    assert w.out("payment.refund_requested", cid) == []
    assert len(w.emails("statement_issued", cid)) == 1
    history = [h for h in w.store.history if h.kind == "settled"]
    assert [h.message_type for h in history] == ["settlement.due"]
    # idempotent: the same tick again claims nothing
    assert await w.processor.process_due_settlements(100) == 0


async def test_report_after_the_statement_stays_non_billable_is_kept_and_counted() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    await w.close(cid)
    await w.send("delivery.final", cid)
    before = w.campaign(cid).version
    late = await w.deliver(cid, "12.00", END - timedelta(hours=1), END)
    (recorded,) = [b["data"] for b in w.caused_by(late) if b["type"] == "delivery.recorded"]
    assert recorded["billable_spend"]["amount"] == "0.00"
    assert recorded["non_billable_reason"] == "after_settlement"
    (row,) = [h for h in w.store.history if h.kind == "delivery_after_settlement"]
    assert row.message_id == late and row.details["spend"] == {
        "amount": "12.00",
        "currency": "EUR",
    }
    assert w.campaign(cid).version == before + 1
    assert metric(w, "campaign_worker_deliveries_after_settlement_total") == 1
    (statement,) = w.store.statements.values()
    assert statement.spent.is_zero()


async def test_final_report_before_the_close_is_refused() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    final = await w.send("delivery.final", cid)
    (rejected,) = w.caused_by(final)
    assert rejected["type"] == "command.rejected"
    assert rejected["data"]["code"] == "invalid_transition"


async def test_cancellation_issues_its_statement_at_once() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    w.clock.now = START + timedelta(days=1)
    await w.send("campaign.cancel", cid, {"reason": "policy"}, actorrole="publisher")
    (statement,) = w.out("settlement.statement_issued", cid)
    assert statement["refund_amount"]["amount"] == "1100.00"
    assert len(w.emails("statement_issued", cid)) == 1


# ------------------------------------------------------------------ item 11


async def test_penalty_above_the_unused_budget_is_refused_and_nothing_is_applied() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    await w.deliver(cid, "300.00", START, START + timedelta(hours=1))
    w.clock.now = START + timedelta(days=1)
    before = (w.campaign(cid), w.account(cid), len(w.store.history), len(w.store.ledger))
    cancel = await w.send(
        "campaign.cancel",
        cid,
        {"reason": "policy", "penalty": {"amount": "800.00", "currency": "EUR"}},
        actorrole="publisher",
    )
    (rejected,) = w.caused_by(cancel)
    assert rejected["type"] == "command.rejected"
    assert rejected["data"]["code"] == "validation_failed"
    assert "maximum of 700.00 EUR" in rejected["data"]["message"]
    after = (w.campaign(cid), w.account(cid), len(w.store.history), len(w.store.ledger))
    assert after == before
    ok = await w.send(
        "campaign.cancel",
        cid,
        {"reason": "policy", "penalty": {"amount": "700.00", "currency": "EUR"}},
        actorrole="publisher",
    )
    (changed,) = [b["data"] for b in w.caused_by(ok) if b["type"] == "campaign.status_changed"]
    (statement,) = w.out("settlement.statement_issued", cid)
    assert (
        changed["penalty"] == statement["penalty_amount"] == {"amount": "700.00", "currency": "EUR"}
    )


# ------------------------------------------------------------------ item 12


async def test_failed_charge_is_retried_with_a_new_charge_id_and_its_success_clears_the_hold() -> (
    None
):
    w = World()
    await w.product()
    cid = str(uuid.uuid4())
    await w.send(
        "campaign.create",
        cid,
        {
            "advertiser_id": "adv-1",
            "title": "T",
            "ad_product_id": "p",
            "budget": {"amount": "100.00", "currency": "EUR"},
            "billing_type": "card",
            "start_at": START.isoformat(),
            "end_at": END.isoformat(),
            "contact": {"name": "A", "email": "a@example.com"},
        },
    )
    await w.send("campaign.submit", cid)
    (first,) = w.out("payment.charge_requested", cid)
    early = await w.send("campaign.retry_charge", cid)
    (refused,) = w.caused_by(early)
    assert refused["data"]["code"] == "invalid_transition"
    assert "no billing error" in refused["data"]["message"]
    await w.send("payment.charge_failed", cid, {"charge_id": first["charge_id"], "reason": "no"})
    assert Hold.BILLING_ERROR in w.store.holds[uuid.UUID(cid)][0]
    publisher = await w.send("campaign.retry_charge", cid, actorrole="publisher")
    assert w.caused_by(publisher)[0]["data"]["code"] == "forbidden"
    retry = await w.send("campaign.retry_charge", cid)
    (second,) = [b["data"] for b in w.caused_by(retry) if b["type"] == "payment.charge_requested"]
    assert second["charge_id"] != first["charge_id"] and second["amount"] == first["amount"]
    await w.send("payment.charge_succeeded", cid, second)
    assert Hold.BILLING_ERROR not in w.store.holds[uuid.UUID(cid)][0]
    assert w.account(cid).charge_confirmed
    assert [h.kind for h in w.store.history].count("charge_retried") == 1


# ------------------------------------------------------------------ item 13


def peer_account(campaign_id: uuid.UUID, impressions: int, clicks: int) -> Account:
    return replace(
        Account(campaign_id, Ledger("EUR")),
        live_impressions=impressions,
        live_clicks=clicks,
        impressions=impressions,
        clicks=clicks,
    )


async def seed_peers(w: World, count: int, impressions: int = 20_000, clicks: int = 200) -> None:
    """`count` other campaigns of product p with 1 % click-through over their LIVE time."""
    template = next(iter(w.store.campaigns.values()))
    for _ in range(count):
        pid = uuid.uuid4()
        w.store.campaigns[pid] = replace(template, id=pid, status=Status.CLOSED)
        w.store.accounts[pid] = peer_account(pid, impressions, clicks)


async def test_low_relevance_against_peers_stops_the_campaign_and_settles_it_like_a_close() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    await seed_peers(w, 5)
    w.clock.now = START + timedelta(hours=3)
    # 0.2 %: above the 0.1 % floor, below a quarter of the peers' 1 % median
    report = await w.deliver(
        cid, "200.00", START, START + timedelta(hours=2), impressions=10_000, clicks=20
    )
    campaign = w.campaign(cid)
    assert campaign.status is Status.CLOSED
    (changed,) = [b["data"] for b in w.caused_by(report) if b["type"] == "campaign.status_changed"]
    assert (changed["from"], changed["to"], changed["reason"], changed["trigger"]) == (
        "LIVE",
        "CLOSED",
        "low_relevance",
        "stop",
    )
    assert Hold.LOW_RELEVANCE not in w.store.holds.get(campaign.id, (frozenset(), None))[0]
    (email,) = w.emails("low_relevance", cid)
    assert email.template_data["ctr"] == "0.200%"
    assert "25% of the median rate 1.000% of 5 similar campaigns" in email.template_data["compared"]
    assert w.emails("campaign_ended", cid) == []  # one email for the stop
    # settled like any close: after the grace (or the final report), unused budget refunded
    assert w.out("settlement.statement_issued", cid) == []
    await w.send("delivery.final", cid)
    (refund,) = w.out("payment.refund_requested", cid)
    assert refund["amount"] == {"amount": "880.00", "currency": "EUR"}
    assert refund["reason"] == "closed"


async def test_with_fewer_than_five_peers_the_absolute_floor_applies() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    await seed_peers(w, 4)
    await seed_peers(w, 3, impressions=9_999)  # too few LIVE impressions to be peers
    w.clock.now = START + timedelta(hours=3)
    await w.deliver(cid, "1.00", START, START + timedelta(hours=2), impressions=10_000, clicks=20)
    assert w.campaign(cid).status is Status.LIVE  # 0.2 % is above the 0.1 % floor
    await w.deliver(
        cid,
        "1.00",
        START + timedelta(hours=2),
        START + timedelta(hours=3),
        impressions=20_000,
        clicks=0,
    )
    assert w.campaign(cid).status is Status.CLOSED  # 20 clicks on 30,000: 0.067 %
    (email,) = w.emails("low_relevance", cid)
    assert email.template_data["compared"] == "below the minimum rate of 0.100%"


async def test_impressions_outside_live_periods_do_not_count_for_relevance() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    w.clock.now = START + timedelta(hours=3)
    # 50,000 impressions without a click, all before the start: not LIVE, not judged
    await w.deliver(
        cid, "0.00", START - timedelta(hours=2), START - timedelta(hours=1), impressions=50_000
    )
    assert w.campaign(cid).status is Status.LIVE
    assert w.account(cid).live_impressions == 0 and w.account(cid).impressions == 50_000


async def test_a_paused_campaign_is_stopped_by_a_late_report_of_its_live_time() -> None:
    w = World(relevance_min_impressions=100)
    await w.product()
    cid = await w.live_campaign(billing="manual")
    w.clock.now = START + timedelta(hours=2)
    await w.send("campaign.pause", cid)
    await w.deliver(cid, "5.00", START, START + timedelta(hours=1), impressions=1_000, clicks=0)
    assert w.campaign(cid).status is Status.CLOSED


async def test_peers_figures_are_read_once_per_batch() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    calls: list[set[str]] = []
    original = FakeUnitOfWork.relevance_peers

    async def counting(self: FakeUnitOfWork, products: Any, minimum: int) -> Any:
        calls.append(set(products))
        return await original(self, products, minimum)

    FakeUnitOfWork.relevance_peers = counting  # type: ignore[method-assign]
    try:
        items = []
        for hour in range(3):
            start = START + timedelta(hours=hour)
            body = {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "/t",
                "type": "delivery.reported",
                "subject": cid,
                "actorrole": "system",
                "data": {
                    "period_start": start.isoformat(),
                    "period_end": (start + timedelta(hours=1)).isoformat(),
                    "impressions": 10,
                    "clicks": 1,
                    "spend": {"amount": "1.00", "currency": "EUR"},
                },
            }
            items.append(translated(body, 100 + hour))
        w.clock.now = START + timedelta(hours=4)
        await w.processor.process(items)
    finally:
        FakeUnitOfWork.relevance_peers = original  # type: ignore[method-assign]
    assert calls == [{"p"}]
    assert len(w.out("delivery.recorded", cid)) == 3


# ------------------------------------------------------------------ emails


async def test_refund_issued_email_is_requested_once_when_the_refund_succeeds() -> None:
    w = World()
    await w.product()
    cid = await w.live_campaign()
    await w.close(cid)
    await w.send("delivery.final", cid)
    (refund,) = w.out("payment.refund_requested", cid)
    ok = {"refund_id": refund["refund_id"], "amount": refund["amount"]}
    await w.send("payment.refund_succeeded", cid, ok)
    await w.send("payment.refund_succeeded", cid, ok)  # a repeat (another message id)
    (email,) = w.emails("refund_issued", cid)
    assert email.template_data["amount"] == "1100.00 EUR"
    assert email.template_data["refund_reason"] == "the unused budget of the ended campaign"
    assert email.subject == 'Refund of 1100.00 EUR for campaign "Winter sale"'
    kinds = [
        json.loads(m.value)["data"]["kind"]
        for m in w.store.outbox
        if b'"notification.requested"' in m.value
    ]
    assert kinds.count("refund_issued") == 1 and kinds.count("statement_issued") == 1


def rendered(request: Any) -> dict[str, str]:
    msg = build_message(
        Outgoing(
            notification_id=str(request.id),
            kind=request.kind,
            to=request.recipient,
            subject=request.subject,
            message_id=request.message_id,
            template_data=request.template_data,
            created_at=request.requested_at,
        ),
        sender="ads@example.com",
        templates=Templates(),
    )
    return {p.get_content_type(): p.get_content() for p in msg.iter_parts()}


async def test_statement_refund_and_low_relevance_emails_say_what_happened_in_text_and_html() -> (
    None
):
    w = World()
    await w.product()
    cid = await w.live_campaign()
    await seed_peers(w, 5)
    w.clock.now = START + timedelta(hours=3)
    await w.deliver(cid, "200.00", START, START + timedelta(hours=2), impressions=10_000, clicks=20)
    await w.send("delivery.final", cid)
    (refund,) = w.out("payment.refund_requested", cid)
    await w.send("payment.refund_succeeded", cid, {"refund_id": refund["refund_id"]})
    (stop,) = w.emails("low_relevance", cid)
    (statement,) = w.emails("statement_issued", cid)
    (refunded,) = w.emails("refund_issued", cid)
    for part in rendered(stop).values():
        assert "stopped" in part and "0.200%" in part and "10000 impressions" in part
        assert "refine the targeting" in part and "ratings and reviews" in part
        assert "campaign.duplicate" in part and "create a new campaign" in part
        assert "$" not in part
    for part in rendered(statement).values():
        for figure in ("1000.00 EUR", "200.00 EUR", "20.00 EUR", "220.00 EUR", "880.00 EUR"):
            assert figure in part
        assert "10%" in part and "$" not in part
    for part in rendered(refunded).values():
        assert "880.00 EUR" in part and "unused budget of the ended campaign" in part
    assert statement.subject == 'Statement for campaign "Winter sale": 220.00 EUR'


async def test_a_late_report_reaching_the_budget_of_a_closed_campaign_sends_no_budget_email() -> (
    None
):
    w = World()
    await w.product()
    cid = await w.live_campaign(budget="100.00")
    await w.close(cid)
    await w.deliver(cid, "150.00", END - timedelta(hours=1), END)
    (recorded,) = w.out("delivery.recorded", cid)
    assert recorded["billable_spend"]["amount"] == "100.00"
    assert recorded["non_billable_reason"] == "over_budget"
    assert w.emails("out_of_budget", cid) == []
    await w.send("delivery.final", cid)
    (statement,) = w.out("settlement.statement_issued", cid)
    assert statement["spent_amount"]["amount"] == "100.00"
    assert statement["refund_amount"]["amount"] == "0.00"
