"""The money side (spec §5-7): charges and refunds requested on status changes, payment
results, delivery reports with billable/non-billable spend, budget and relevance holds, and one
settlement statement per campaign. The rules are pure (domain/settlement.py); this module
loads nothing itself: the processor preloads accounts and status history with the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from campaign_worker import topics
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.events import CampaignStatusChanged
from campaign_worker.domain.model import Actor, Campaign, Role, Status
from campaign_worker.domain.money import Money
from campaign_worker.domain.serving import HoldSignal
from campaign_worker.domain.settlement import (
    Account,
    ChargeRequested,
    DeliveryReport,
    MoneyEvent,
    RefundRequested,
    RefundRetried,
    SpendRecorded,
    StatementIssued,
    evolve_account,
    live_intervals,
    on_status_changed,
    record_charge,
    record_delivery,
    record_refund_result,
    retry_refund,
)
from campaign_worker.service.envelope import to_wire
from campaign_worker.service.handlers import BatchContext, existing_campaign, refuse
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.notifications import notify
from campaign_worker.service.parts import apply_signal
from campaign_worker.service.unit_of_work import LedgerRow

# ------------------------------------------------------------------ payloads


@dataclass(frozen=True)
class ChargeResult:
    charge_id: str
    succeeded: bool
    amount: Money | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    succeeded: bool
    amount: Money | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RetryRefund:
    refund_id: str


@dataclass(frozen=True)
class ReportDelivery:
    period_start: datetime
    period_end: datetime
    impressions: int
    clicks: int
    spend: Money


# ------------------------------------------------------------------ shared


def account_of(ctx: BatchContext, campaign: Campaign) -> Account:
    return ctx.accounts.get(campaign.id) or Account.open(campaign)


def status_money(
    ctx: BatchContext, after: Campaign, change: CampaignStatusChanged
) -> list[MoneyEvent]:
    """The money events a status change causes (raises Refusal: the command is refused whole)."""
    return on_status_changed(after, account_of(ctx, after), change, ctx.now, ctx.rules)


def apply_money(
    ctx: BatchContext, item: Inbound, campaign: Campaign, events: Sequence[MoneyEvent]
) -> None:
    """Apply money events: account, ledger rows (with the causing message and actor), outgoing
    charge/refund requests and statements, and the holds and emails they imply."""
    if not events:
        return
    account = account_of(ctx, campaign)
    for ev in events:
        before = account.ledger.entries
        account = evolve_account(account, ev)
        for entry in account.ledger.entries[len(before) :]:
            ctx.ledger_rows.append(LedgerRow(campaign.id, entry, item.message_id))
        _out(ctx, item, campaign, ev)
    ctx.accounts[campaign.id] = account
    ctx.changed_accounts.add(campaign.id)
    ctx.track(campaign.id)


def _settlement(
    ctx: BatchContext, item: Inbound, type_: str, data: dict[str, Any], campaign: Campaign
) -> None:
    ctx.emit(
        item,
        type_,
        {"campaign_id": str(campaign.id), **data},
        topic=topics.SETTLEMENTS,
        subject=str(campaign.id),
    )


def _out(ctx: BatchContext, item: Inbound, campaign: Campaign, ev: MoneyEvent) -> None:
    if isinstance(ev, ChargeRequested):
        _settlement(
            ctx,
            item,
            "payment.charge_requested",
            {"charge_id": ev.charge_id, "amount": to_wire(ev.amount)},
            campaign,
        )
    elif isinstance(ev, RefundRequested):
        _settlement(
            ctx,
            item,
            "payment.refund_requested",
            {"refund_id": ev.refund_id, "amount": to_wire(ev.amount), "reason": ev.reason.value},
            campaign,
        )
    elif isinstance(ev, RefundRetried):
        refund = ctx.accounts.get(campaign.id, account_of(ctx, campaign)).refund(ev.refund_id)
        _settlement(
            ctx,
            item,
            "payment.refund_requested",
            {
                "refund_id": ev.refund_id,
                "amount": to_wire(refund.amount) if refund else None,
                "reason": refund.reason.value if refund else "retry",
                "attempt": ev.attempt,
            },
            campaign,
        )
    elif isinstance(ev, StatementIssued):
        st = ev.statement
        ctx.new_statements.append(st)
        _settlement(
            ctx,
            item,
            "settlement.statement_issued",
            {
                "statement_id": st.statement_id,
                "billing_type": st.billing_type.value,
                "booked_amount": to_wire(st.booked),
                "spent_amount": to_wire(st.spent),
                "penalty_amount": to_wire(st.penalty),
                "tax_amount": to_wire(st.tax),
                "refund_amount": to_wire(st.refund),
                "final_amount": to_wire(st.final),
                "tax_rate": str(st.tax_rate),
                "charged_amount": to_wire(st.charged),
            },
            campaign,
        )
    elif isinstance(ev, SpendRecorded):
        non_billable = ev.split.non_billable
        ctx.emit(
            item,
            "delivery.recorded",
            {
                "campaign_id": str(campaign.id),
                "billable_spend": to_wire(ev.split.billable),
                "non_billable_spend": to_wire(
                    sum((n.amount for n in non_billable), Money.zero(ev.spend.currency))
                ),
                "non_billable_reason": non_billable[0].reason.value if non_billable else None,
                "non_billable": [
                    {"amount": to_wire(n.amount), "reason": n.reason.value} for n in non_billable
                ],
                "spent_total": to_wire(ev.spent_total),
                "impressions": ev.impressions,
                "clicks": ev.clicks,
            },
            subject=str(campaign.id),
        )


SYSTEM = Actor(Role.SYSTEM, "billing")


def _hold(ctx: BatchContext, item: Inbound, campaign: Campaign, signal: HoldSignal) -> None:
    apply_signal(ctx, item, campaign.id, signal, SYSTEM)


# ------------------------------------------------------------------ handlers


def _system_only(item: Inbound) -> None:
    if item.actor.role is not Role.SYSTEM:
        raise Refusal(
            RefusalCode.FORBIDDEN,
            f"{item.type} is a fact of the payment service or the ad server "
            f"(actorrole system), not of a {item.actor.role.value}",
        )


Decision = Callable[[Campaign, Account], list[MoneyEvent]]


def _run(
    ctx: BatchContext, item: Inbound, decision: Decision, *, system_only: bool = True
) -> tuple[Campaign, list[MoneyEvent]] | None:
    """The shape every money message shares: find the campaign, decide against its account
    (a Refusal becomes `command.rejected`), apply the events. None when refused."""
    campaign = existing_campaign(ctx, item)
    if campaign is None:
        return None
    try:
        if system_only:
            _system_only(item)
        events = decision(campaign, account_of(ctx, campaign))
    except Refusal as refusal:
        refuse(ctx, item, refusal)
        return None
    apply_money(ctx, item, campaign, events)
    return campaign, events


def handle_charge_result(ctx: BatchContext, item: Inbound) -> None:
    payload: ChargeResult = item.payload  # type: ignore[assignment]

    def decision(campaign: Campaign, account: Account) -> list[MoneyEvent]:
        if payload.succeeded:
            assert payload.amount is not None
            return record_charge(
                campaign, account, payload.charge_id, payload.amount, item.actor, ctx.now
            )
        if payload.charge_id not in {c.charge_id for c in account.charges}:
            raise Refusal(
                RefusalCode.NOT_FOUND,
                f"charge {payload.charge_id} was never requested for {campaign.id}",
            )
        return []

    done = _run(ctx, item, decision)
    if done is None:
        return
    campaign, _ = done
    current = account_of(ctx, campaign).current_charge
    is_current = current is not None and current.charge_id == payload.charge_id
    if payload.succeeded:
        _hold(ctx, item, campaign, HoldSignal.CHARGE_SUCCEEDED)
    elif is_current and campaign.status not in (Status.CLOSED, Status.CANCELLED):
        before = ctx.holds.get(campaign.id, frozenset())
        _hold(ctx, item, campaign, HoldSignal.CHARGE_FAILED)
        if ctx.holds.get(campaign.id, frozenset()) != before:
            notify(
                ctx,
                item,
                "billing_error",
                campaign,
                {"reason": payload.reason or "the card charge failed"},
            )
    ctx.applied(item)


def handle_refund_result(ctx: BatchContext, item: Inbound) -> None:
    payload: RefundResult = item.payload  # type: ignore[assignment]

    def decision(campaign: Campaign, account: Account) -> list[MoneyEvent]:
        return record_refund_result(
            account,
            payload.refund_id,
            item.actor,
            ctx.now,
            succeeded=payload.succeeded,
            error=payload.reason,
            amount=payload.amount,
        )

    if _run(ctx, item, decision) is not None:
        ctx.applied(item)


def handle_refund_retry(ctx: BatchContext, item: Inbound) -> None:
    payload: RetryRefund = item.payload  # type: ignore[assignment]

    def decision(campaign: Campaign, account: Account) -> list[MoneyEvent]:
        return retry_refund(account, payload.refund_id, item.actor, ctx.now)

    # the publisher's command: retry_refund checks the role itself
    if _run(ctx, item, decision, system_only=False) is not None:
        ctx.applied(item)


def handle_delivery(ctx: BatchContext, item: Inbound) -> None:
    payload: ReportDelivery = item.payload  # type: ignore[assignment]
    report = DeliveryReport(
        report_id=item.message_id,
        period_start=payload.period_start,
        period_end=payload.period_end,
        impressions=payload.impressions,
        clicks=payload.clicks,
        spend=payload.spend,
    )

    def decision(campaign: Campaign, account: Account) -> list[MoneyEvent]:
        transitions = list(ctx.status_history.get(campaign.id, ()))
        transitions += [
            (h.occurred_at, Status(h.to_status))
            for h in ctx.history
            if h.campaign_id == campaign.id and h.to_status is not None
        ]
        return record_delivery(
            campaign, account, report, live_intervals(transitions), item.actor, ctx.now, ctx.rules
        )

    # record_delivery checks that the report comes from the system
    done = _run(ctx, item, decision, system_only=False)
    if done is None:
        return
    campaign, events = done
    for ev in events:
        if isinstance(ev, SpendRecorded) and ev.budget_reached:
            _hold(ctx, item, campaign, HoldSignal.BUDGET_EXHAUSTED)
            notify(ctx, item, "out_of_budget", campaign, {"spent": str(ev.spent_total)})
        if isinstance(ev, SpendRecorded) and ev.relevance_low:
            _hold(ctx, item, campaign, HoldSignal.RELEVANCE_LOW)
            account = account_of(ctx, campaign)
            ctr = (
                Decimal(account.clicks) / Decimal(account.impressions) * 100
                if account.impressions
                else Decimal(0)
            )
            notify(
                ctx,
                item,
                "low_relevance",
                campaign,
                {
                    "impressions": str(account.impressions),
                    "clicks": str(account.clicks),
                    "ctr": f"{ctr.quantize(Decimal('0.001'))}%",
                },
            )
    ctx.applied(item)


def needs_history(item: Inbound) -> UUID | None:
    return item.campaign_id if isinstance(item.payload, ReportDelivery) else None
