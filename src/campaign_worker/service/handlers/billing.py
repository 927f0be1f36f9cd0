"""Money facts and commands (spec §5-7): payment results, refund retries, delivery reports.
The rules are pure (`domain/settlement.py`); what the money events publish and the ledger rows
they write are in `service/reactions.py` (`apply_money`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.model import Actor, Campaign, Role, Status
from campaign_worker.domain.serving import HoldSignal
from campaign_worker.domain.settlement import (
    DeliveryReport,
    MoneyEvent,
    SpendRecorded,
    live_intervals,
    record_charge,
    record_delivery,
    record_refund_result,
    retry_refund,
)
from campaign_worker.service.batch import Batch
from campaign_worker.service.handlers.route import Route, Wants
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.notifications import notify
from campaign_worker.service.reactions import apply_money, apply_signal

BILLING = Actor(Role.SYSTEM, "billing")


def _system_only(item: Inbound) -> None:
    if item.actor.role is not Role.SYSTEM:
        raise Refusal(
            RefusalCode.FORBIDDEN,
            f"{item.type} is a fact of the payment service or the ad server "
            f"(actorrole system), not of a {item.actor.role.value}",
        )


def handle_charge_result(batch: Batch, item: Inbound, command: cmd.RecordChargeResult) -> None:
    campaign = batch.campaign(item)
    _system_only(item)
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
    _system_only(item)
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


def handle_refund_retry(batch: Batch, item: Inbound, command: cmd.RetryRefund) -> None:
    """The publisher's command: `retry_refund` checks the role itself."""
    campaign = batch.campaign(item)
    events = retry_refund(batch.account(campaign), command.refund_id, item.actor, batch.now)
    apply_money(batch, item, campaign, events)


def handle_delivery(batch: Batch, item: Inbound, command: cmd.ReportDelivery) -> None:
    """`record_delivery` checks that the report comes from the system."""
    campaign = batch.campaign(item)
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
        if isinstance(ev, SpendRecorded) and ev.budget_reached:
            apply_signal(batch, item, campaign.id, HoldSignal.BUDGET_EXHAUSTED, BILLING)
            notify(batch, item, "out_of_budget", campaign, {"spent": str(ev.spent_total)})
        if isinstance(ev, SpendRecorded) and ev.relevance_low:
            apply_signal(batch, item, campaign.id, HoldSignal.RELEVANCE_LOW, BILLING)
            account = batch.account(campaign)
            ctr = (
                Decimal(account.clicks) / Decimal(account.impressions) * 100
                if account.impressions
                else Decimal(0)
            )
            notify(
                batch,
                item,
                "low_relevance",
                campaign,
                {
                    "impressions": str(account.impressions),
                    "clicks": str(account.clicks),
                    "ctr": f"{ctr.quantize(Decimal('0.001'))}%",
                },
            )


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
    return Wants(
        campaigns=frozenset({command.campaign_id}), status_history=frozenset({command.campaign_id})
    )


ROUTES = (
    Route((cmd.RecordChargeResult,), handle_charge_result, ends_first=False),
    Route((cmd.RecordRefundResult,), handle_refund_result, ends_first=False),
    Route((cmd.RetryRefund,), handle_refund_retry),
    Route((cmd.ReportDelivery,), handle_delivery, _with_history, ends_first=False),
)
