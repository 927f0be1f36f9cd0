"""Money facts and commands (spec §5-7): payment results, charge and refund retries, delivery
reports, the final report and the settlement of closed campaigns, the low-relevance stop.
The rules are pure (`domain/settlement.py`); what the money events publish and the ledger rows
they write are in `service/reactions.py` (`apply_money`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.lifecycle import evolve, stop_for_low_relevance
from campaign_worker.domain.model import TERMINAL, Actor, Campaign, Role, Status
from campaign_worker.domain.permissions import check
from campaign_worker.domain.serving import Hold, HoldSignal
from campaign_worker.domain.settlement import (
    DeliveryReport,
    MoneyEvent,
    Relevance,
    SpendRecorded,
    live_intervals,
    record_charge,
    record_delivery,
    record_refund_result,
    relevance,
    retry_charge,
    retry_refund,
    settle,
)
from campaign_worker.service.batch import Batch
from campaign_worker.service.envelope import to_wire
from campaign_worker.service.handlers.route import Route, Wants
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.notifications import notify
from campaign_worker.service.reactions import (
    apply_money,
    apply_signal,
    notify_refund_issued,
    record_change,
    status_money,
)

BILLING = Actor(Role.SYSTEM, "billing")


def _may(action: str, item: Inbound) -> None:
    """Facts of the payment service and the ad server: who may send them is their row of
    `permissions.PERMISSIONS` (checked here before their charge or refund is looked up)."""
    check(action, item.actor)


def handle_charge_result(batch: Batch, item: Inbound, command: cmd.RecordChargeResult) -> None:
    campaign = batch.campaign(item)
    _may("payment.charge_succeeded" if command.succeeded else "payment.charge_failed", item)
    account = batch.account(campaign)
    events: list[MoneyEvent] = []
    if command.succeeded:
        assert command.amount is not None
        events = record_charge(
            campaign, account, command.charge_id, command.amount, item.actor, batch.now
        )
    elif command.charge_id not in {c.charge_id for c in account.charges}:
        raise Refusal(
            RefusalCode.NOT_FOUND,
            f"charge {command.charge_id} was never requested for {campaign.id}",
        )
    apply_money(batch, item, campaign, events)
    current = batch.account(campaign).current_charge
    is_current = current is not None and current.charge_id == command.charge_id
    if command.succeeded:
        apply_signal(batch, item, campaign.id, HoldSignal.CHARGE_SUCCEEDED, BILLING)
    elif is_current and campaign.status not in (Status.CLOSED, Status.CANCELLED):
        before = batch.holds_of(campaign.id)
        apply_signal(batch, item, campaign.id, HoldSignal.CHARGE_FAILED, BILLING)
        if batch.holds_of(campaign.id) != before:
            reason = command.reason or "the card charge failed"
            notify(batch, item, "billing_error", campaign, {"reason": reason})


def handle_refund_result(batch: Batch, item: Inbound, command: cmd.RecordRefundResult) -> None:
    campaign = batch.campaign(item)
    _may("payment.refund_succeeded" if command.succeeded else "payment.refund_failed", item)
    events = record_refund_result(
        batch.account(campaign),
        command.refund_id,
        item.actor,
        batch.now,
        succeeded=command.succeeded,
        error=command.reason,
        amount=command.amount,
    )
    apply_money(batch, item, campaign, events)
    notify_refund_issued(batch, item, campaign, events)


def handle_refund_retry(batch: Batch, item: Inbound, command: cmd.RetryRefund) -> None:
    """The publisher's command: `retry_refund` checks the role itself."""
    campaign = batch.campaign(item)
    events = retry_refund(batch.account(campaign), command.refund_id, item.actor, batch.now)
    apply_money(batch, item, campaign, events)


def handle_retry_charge(batch: Batch, item: Inbound, command: cmd.RetryCharge) -> None:
    """`campaign.retry_charge` (the advertiser, while `billing_error` is set): a new charge
    request; `handle_charge_result` clears the hold when it succeeds."""
    campaign = batch.campaign(item)
    events = retry_charge(
        campaign,
        batch.account(campaign),
        Hold.BILLING_ERROR in batch.holds_of(campaign.id),
        item.actor,
        batch.now,
        batch.rules,
    )
    apply_money(batch, item, campaign, events)
    batch.bump(campaign.id)
    batch.record(
        item,
        campaign.id,
        "charge_retried",
        details={"charge_id": batch.account(campaign).charges[-1].charge_id},
    )


def handle_settle(batch: Batch, item: Inbound, command: cmd.SettleCampaign) -> None:
    """The statement of a closed campaign (spec §6): at `delivery.final` from the ad server, or
    when the settlement grace runs out (the scheduler), whichever comes first; the later one
    finds it settled and changes nothing."""
    campaign = batch.campaign(item)
    _may("delivery.final" if command.final else "settlement.due", item)
    events = settle(
        campaign, batch.account(campaign), item.actor, batch.now, batch.rules, final=command.final
    )
    if not events:
        return
    apply_money(batch, item, campaign, events)
    batch.bump(campaign.id)
    batch.record(item, campaign.id, "settled", details={"final_report": command.final})


def handle_delivery(batch: Batch, item: Inbound, command: cmd.ReportDelivery) -> None:
    """`record_delivery` checks that the report comes from the system. A report after the
    statement is recorded as non-billable and kept in the history (`campaign show`, and the
    `campaign_worker_deliveries_after_settlement_total` metric); a report that makes the
    campaign's relevance low stops it (T13)."""
    campaign = batch.campaign(item)
    batch.track(campaign.id)
    report = DeliveryReport(
        report_id=item.message_id,
        period_start=command.period_start,
        period_end=command.period_end,
        impressions=command.impressions,
        clicks=command.clicks,
        spend=command.spend,
    )
    events = record_delivery(
        campaign,
        batch.account(campaign),
        report,
        live_intervals(_statuses(batch, campaign)),
        item.actor,
        batch.now,
        batch.rules,
    )
    apply_money(batch, item, campaign, events)
    for ev in events:
        if isinstance(ev, SpendRecorded) and ev.after_settlement:
            batch.bump(campaign.id)
            batch.record(
                item,
                campaign.id,
                "delivery_after_settlement",
                details={
                    "report_id": ev.report_id,
                    "period_start": to_wire(ev.period_start),
                    "period_end": to_wire(ev.period_end),
                    "spend": to_wire(ev.spend),
                    "impressions": ev.impressions,
                    "clicks": ev.clicks,
                },
            )
        # (a closed campaign's last reports may still reach the budget before its statement:
        # the ended campaign needs no hold and no email about it)
        if isinstance(ev, SpendRecorded) and ev.budget_reached and campaign.status not in TERMINAL:
            apply_signal(batch, item, campaign.id, HoldSignal.BUDGET_EXHAUSTED, BILLING)
            notify(batch, item, "out_of_budget", campaign, {"spent": str(ev.spent_total)})
    _judge_relevance(batch, item, campaign.id)


def peers_of(batch: Batch, campaign: Campaign) -> dict[UUID, tuple[int, int]]:
    """The (LIVE impressions, LIVE clicks) of the other campaigns of the same ad product, as
    loaded for the batch, with this batch's own figures where it changed a peer's account."""
    peers = dict(batch.state.relevance_peers.get(campaign.ad_product_id, {}))
    for cid, account in batch.state.accounts.items():
        other = batch.state.campaigns.get(cid)
        if other is not None and other.ad_product_id == campaign.ad_product_id:
            peers[cid] = (account.live_impressions, account.live_clicks)
    peers.pop(campaign.id, None)
    return peers


def _judge_relevance(batch: Batch, item: Inbound, campaign_id: UUID) -> None:
    """Spec §7: a LIVE (or PAUSED) campaign whose click-through rate over its LIVE impressions
    is too low against its peers (or the floor, with fewer than 5 peers) is stopped: CLOSED
    with cause `low_relevance` (T13), settled like any close, one email with the tips."""
    campaign = batch.state.campaigns[campaign_id]
    if campaign.status not in (Status.LIVE, Status.PAUSED):
        return
    account = batch.account(campaign)
    verdict = relevance(
        account.live_impressions,
        account.live_clicks,
        peers_of(batch, campaign).values(),
        batch.rules,
    )
    if verdict is None or not verdict.low:
        return
    change = stop_for_low_relevance(campaign, item.actor)
    after = evolve(campaign, change)
    money = status_money(batch, after, change)
    record_change(batch, item, campaign, after, change)
    batch.put_campaign(after)
    apply_money(batch, item, after, money)
    data = relevance_template_data(verdict, batch.rules.relevance_peer_ratio)
    notify(batch, item, "low_relevance", after, data)


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).quantize(Decimal('0.001'))}%"


def relevance_template_data(verdict: Relevance, ratio: Decimal) -> dict[str, str]:
    """The low-relevance stop email's figures: the campaign's rate and what it was held to."""
    if verdict.peer_median_ctr is not None:
        compared = (
            f"below {_percent(verdict.threshold)}, which is {(ratio * 100).normalize():f}% "
            f"of the median rate {_percent(verdict.peer_median_ctr)} of {verdict.peers} "
            "similar campaigns"
        )
    else:
        compared = f"below the minimum rate of {_percent(verdict.threshold)}"
    return {
        "impressions": str(verdict.impressions),
        "clicks": str(verdict.clicks),
        "ctr": _percent(verdict.ctr),
        "compared": compared,
    }


def _statuses(batch: Batch, campaign: Campaign) -> list[tuple[datetime, Status]]:
    """The statuses the campaign reached, stored ones first, then this batch's."""
    reached = list(batch.state.status_history.get(campaign.id, ()))
    reached += [
        (h.occurred_at, Status(h.to_status))
        for h in batch.out.history
        if h.campaign_id == campaign.id and h.to_status is not None
    ]
    return reached


def _with_history(command: cmd.ReportDelivery, item: Inbound) -> Wants:
    ids = frozenset({command.campaign_id})
    return Wants(campaigns=ids, status_history=ids, relevance_peers=ids)


ROUTES = (
    Route((cmd.RecordChargeResult,), handle_charge_result, ends_first=False),
    Route((cmd.RecordRefundResult,), handle_refund_result, ends_first=False),
    Route((cmd.RetryRefund,), handle_refund_retry),
    Route((cmd.RetryCharge,), handle_retry_charge),
    Route((cmd.ReportDelivery,), handle_delivery, _with_history, ends_first=False),
    Route((cmd.SettleCampaign,), handle_settle, ends_first=False),
)
