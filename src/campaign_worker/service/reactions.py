"""What a change sets off, in one place: the history row and events of a campaign change, the
money a status change moves, the emails it sends, the holds that follow from the catalog and
from payments, and serving (through `Batch.track`).

Handlers call these; nothing here decides whether a command is allowed (the domain does) and
nothing here does I/O (the batch collects everything for the processor to write).

Campaign status changes that email the advertiser (spec §1, §10):

| rule | change | kind |
|---|---|---|
| T2 | SUBMITTED -> BOOKED (review approved) | `campaign_review_approved` |
| T3 | SUBMITTED -> REJECTED (with the reason) | `campaign_review_rejected` |
| T5 | BOOKED -> LIVE (start time reached) | `campaign_started` |
| T9 | PAUSED -> LIVE, paused while BOOKED and the start passed meanwhile | `campaign_started` |
| T6 | LIVE/PAUSED -> CLOSED (end time reached) | `campaign_ended` |
| T7 | BOOKED -> CLOSED (never went live) | `campaign_ended`, saying it never ran |

T7 sends no "started" email (the spec says so) but does send "campaign ended": §10 lists
"campaign ended" for every ending, the advertiser must learn that the campaign is over (and,
for card billing, that everything is refunded), and a campaign paused while BOOKED that
closes at its end (T6) gets the same email, so T7 would otherwise be the one silent ending.
A resume of a campaign paused while LIVE (back to LIVE) sends nothing: it had started.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from campaign_worker.domain.commands import EndDue, StartDue
from campaign_worker.domain.events import CampaignCreated, CampaignStatusChanged, CampaignUpdated
from campaign_worker.domain.events import Event as CampaignEvent
from campaign_worker.domain.model import Actor, BillingType, Campaign, Role, Status, Trigger
from campaign_worker.domain.serving import (
    Hold,
    HoldSignal,
    buyable_signal,
    evolve_holds,
    hold_changes,
)
from campaign_worker.domain.settlement import (
    Account,
    ChargeRequested,
    MoneyEvent,
    RefundReason,
    RefundRequested,
    RefundRetried,
    RefundSucceeded,
    SpendRecorded,
    Statement,
    StatementIssued,
    evolve_account,
    on_status_changed,
)
from campaign_worker.service import outbound as out
from campaign_worker.service.batch import Batch
from campaign_worker.service.envelope import to_wire
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.notifications import notify
from campaign_worker.service.unit_of_work import LedgerRow

CATALOG = Actor(Role.SYSTEM, "catalog")

# ------------------------------------------------------------------ a campaign change


def record_created(
    batch: Batch, item: Inbound, campaign: Campaign, reason: str, details: dict[str, Any]
) -> None:
    """A campaign came into existence (created or duplicated): its first history row and its
    `campaign.status_changed` from null."""
    batch.record(
        item,
        campaign.id,
        "created",
        version=campaign.version,
        to_status=campaign.status.value,
        details=details,
    )
    batch.emit(
        item,
        out.CampaignStatusChanged(
            campaign_id=campaign.id,
            from_=None,
            to=campaign.status,
            reason=reason,
            display_status=batch.display(campaign),
            version=campaign.version,
            actor=item.actor,
            schedule=out.Schedule.of(campaign),
        ),
        subject=campaign.id,
    )


def record_change(
    batch: Batch, item: Inbound, before: Campaign | None, after: Campaign, ev: CampaignEvent
) -> None:
    """The history row and the event of one lifecycle event, `before` -> `after`."""
    if isinstance(ev, CampaignCreated):
        record_created(batch, item, after, "created", {"campaign": to_wire(after)})
    elif isinstance(ev, CampaignStatusChanged):
        due_at, lateness = _lateness(batch, item, before, ev)
        details: dict[str, Any] = {"reason": ev.reason}
        if lateness is not None:
            details["due_at"] = to_wire(due_at)
            details["lateness_seconds"] = lateness
        if ev.penalty is not None:
            details["penalty"] = to_wire(ev.penalty)
        batch.record(
            item,
            after.id,
            "status_changed",
            version=after.version,
            from_status=ev.from_status.value,
            to_status=ev.to_status.value,
            trigger=ev.trigger.value,
            details=details,
        )
        batch.emit(
            item,
            out.CampaignStatusChanged(
                campaign_id=after.id,
                from_=ev.from_status,
                to=ev.to_status,
                reason=ev.reason if ev.reason is not None else ev.trigger.value,
                trigger=ev.trigger.value,
                display_status=batch.display(after),
                version=after.version,
                actor=item.actor,
                penalty=ev.penalty,
                due_at=due_at,
                lateness_seconds=lateness,
                schedule=out.Schedule.of(after),
            ),
        )
    elif isinstance(ev, CampaignUpdated):
        batch.record(
            item,
            after.id,
            "updated",
            version=after.version,
            details={"changes": to_wire(dict(ev.changes))},
        )
        batch.emit(
            item,
            out.CampaignUpdated(
                campaign_id=after.id,
                changes=ev.changes,
                version=after.version,
                actor=item.actor,
                schedule=out.Schedule.of(after),
            ),
        )


def _lateness(
    batch: Batch, item: Inbound, before: Campaign | None, ev: CampaignStatusChanged
) -> tuple[datetime | None, float | None]:
    """How late a time-driven transition was applied (spec §11), measured from the instant
    it was due: the start for `start`, the end for `end` (also when a missed start closes
    the campaign directly). (None, None) for any other change."""
    if before is None or not isinstance(item.payload, EndDue | StartDue):
        return None, None
    due = before.start_at if ev.trigger is Trigger.START else before.end_at
    return due, round(max(0.0, (batch.now - due).total_seconds()), 3)


# ------------------------------------------------------------------ holds


def apply_signal(
    batch: Batch,
    item: Inbound,
    campaign_id: UUID,
    signal: HoldSignal,
    actor: Actor,
    reason: str | None = None,
) -> None:
    """Apply a hold signal to one campaign (raises Refusal before changing anything)."""
    campaign = batch.state.campaigns[campaign_id]
    batch.track(campaign_id)
    holds = batch.holds_of(campaign_id)
    for change in hold_changes(campaign, holds, signal, actor, reason):
        holds = evolve_holds(holds, change)
        batch.put_holds(campaign_id, holds)
        if signal is HoldSignal.SUSPENDED:
            batch.put_suspension_reason(campaign_id, change.reason)
        elif signal is HoldSignal.REINSTATED:
            batch.put_suspension_reason(campaign_id, None)
        batch.bump(campaign_id)
        batch.record(
            item,
            campaign_id,
            "holds_changed",
            details={
                "signal": signal.value,
                "added": sorted(h.value for h in change.added),
                "removed": sorted(h.value for h in change.removed),
                "reason": change.reason,
            },
        )
        if signal is HoldSignal.SUSPENDED:
            notify(batch, item, "campaign_suspended", campaign, {"reason": change.reason})
        elif signal is HoldSignal.REINSTATED and Hold.SUSPENDED in change.removed:
            notify(batch, item, "campaign_reinstated", campaign)


def initial_holds(batch: Batch, item: Inbound, campaign: Campaign) -> None:
    """The holds of a campaign that comes into existence (created, duplicated) or moves to
    another product, computed the same way on every path: a product the catalog says cannot
    be bought gives `product_not_buyable`; a buyable one clears it."""
    product = batch.state.products.get(campaign.ad_product_id)
    if product is not None:
        apply_signal(batch, item, campaign.id, buyable_signal(product.buyable), CATALOG)


# ------------------------------------------------------------------ money


def status_money(batch: Batch, after: Campaign, change: CampaignStatusChanged) -> list[MoneyEvent]:
    """The money events a status change causes (raises Refusal: the command is refused whole,
    e.g. a penalty above what can be collected)."""
    return on_status_changed(after, batch.account(after), change, batch.now, batch.rules)


def apply_money(
    batch: Batch, item: Inbound, campaign: Campaign, events: Sequence[MoneyEvent]
) -> None:
    """Apply money events: account, ledger rows (with the causing message), and the charge and
    refund requests, statements and delivery records they publish. An issued statement is
    also emailed (`statement_issued`, spec §10), with the refund it comes with."""
    if not events:
        return
    account = batch.account(campaign)
    for ev in events:
        before = account.ledger.entries
        account = evolve_account(account, ev)
        for entry in account.ledger.entries[len(before) :]:
            batch.out.ledger.append(LedgerRow(campaign.id, entry, item.message_id))
        payload = _money_out(campaign, account, ev)
        if isinstance(ev, StatementIssued):
            batch.out.statements.append(ev.statement)
        if payload is not None:
            batch.emit(item, payload, subject=campaign.id)
    batch.put_account(account)
    batch.track(campaign.id)
    for ev in events:
        if isinstance(ev, StatementIssued):
            notify(batch, item, "statement_issued", campaign, statement_template_data(ev.statement))


def statement_template_data(st: Statement) -> dict[str, Any]:
    """The `statement_issued` email's figures (spec §6), and what they mean for the advertiser."""
    if st.billing_type is BillingType.CARD:
        outcome = (
            f"{st.refund} of your card payment of {st.charged} is refunded to you."
            if st.refund.amount > 0
            else f"Your card payment of {st.charged} covers it; nothing is refunded."
        )
    else:
        outcome = f"{st.final} is owed and will be invoiced."
    return {
        "statement_id": st.statement_id,
        "billing_type": st.billing_type.value,
        "tax_rate": f"{(st.tax_rate * 100).normalize():f}%",
        "booked": str(st.booked),
        "spent": str(st.spent),
        "penalty": str(st.penalty),
        "tax": str(st.tax),
        "refund": str(st.refund),
        "final": str(st.final),
        "charged": str(st.charged),
        "statement_outcome": outcome,
    }


def notify_refund_issued(
    batch: Batch, item: Inbound, campaign: Campaign, events: Sequence[MoneyEvent]
) -> None:
    """`payment.refund_succeeded`: the money is back on the advertiser's card (spec §10)."""
    account = batch.account(campaign)
    for ev in events:
        if isinstance(ev, RefundSucceeded):
            refund = account.refund(ev.refund_id)
            assert refund is not None  # record_refund_result refuses unknown refunds
            notify(
                batch,
                item,
                "refund_issued",
                campaign,
                {
                    "refund_id": refund.refund_id,
                    "amount": str(refund.amount),
                    "refund_reason": REFUND_REASON_TEXT[refund.reason],
                },
            )


REFUND_REASON_TEXT = {
    RefundReason.REVIEW_REJECTED: "the campaign was not approved",
    RefundReason.CANCELLED_BEFORE_APPROVAL: "the campaign was cancelled before approval",
    RefundReason.CANCELLED_AFTER_APPROVAL: "the unused budget of the cancelled campaign",
    RefundReason.CLOSED: "the unused budget of the ended campaign",
    RefundReason.LATE_CHARGE: "a payment that arrived after the campaign no longer needed it",
}


def _money_out(campaign: Campaign, account: Account, ev: MoneyEvent) -> out.Outgoing | None:
    """The message a money event publishes, if any (`account` is after the event)."""
    if isinstance(ev, ChargeRequested):
        return out.ChargeRequested(campaign.id, ev.charge_id, ev.amount)
    if isinstance(ev, RefundRequested):
        return out.RefundRequested(campaign.id, ev.refund_id, ev.amount, ev.reason.value)
    if isinstance(ev, RefundRetried):
        refund = account.refund(ev.refund_id)
        assert refund is not None  # retry_refund refuses a refund it does not know
        return out.RefundRequested(
            campaign.id, ev.refund_id, refund.amount, refund.reason.value, attempt=ev.attempt
        )
    if isinstance(ev, StatementIssued):
        st = ev.statement
        return out.StatementIssued(
            campaign_id=campaign.id,
            statement_id=st.statement_id,
            billing_type=st.billing_type,
            booked_amount=st.booked,
            spent_amount=st.spent,
            penalty_amount=st.penalty,
            tax_amount=st.tax,
            refund_amount=st.refund,
            final_amount=st.final,
            tax_rate=str(st.tax_rate),
            charged_amount=st.charged,
        )
    if isinstance(ev, SpendRecorded):
        split = ev.split
        return out.DeliveryRecorded(
            campaign_id=campaign.id,
            billable_spend=split.billable,
            non_billable_spend=split.non_billable_total,
            non_billable_reason=split.non_billable_reason,
            non_billable=[(n.amount, n.reason.value) for n in split.non_billable],
            spent_total=ev.spent_total,
            impressions=ev.impressions,
            clicks=ev.clicks,
        )
    return None


# ------------------------------------------------------------------ emails


def notify_status_change(
    batch: Batch, item: Inbound, before: Campaign | None, after: Campaign, ev: CampaignEvent
) -> None:
    """The campaign emails of spec §1 (see the table in this module's docstring)."""
    if not isinstance(ev, CampaignStatusChanged):
        return
    to, trigger = ev.to_status, ev.trigger
    if trigger is Trigger.APPROVE and to is Status.BOOKED:
        notify(batch, item, "campaign_review_approved", after)
    elif trigger is Trigger.REJECT and to is Status.REJECTED:
        reason = ev.reason or after.rejection_reason or "no reason given"
        notify(batch, item, "campaign_review_rejected", after, {"reason": reason})
    elif to is Status.LIVE and (
        trigger is Trigger.START
        or (
            trigger is Trigger.RESUME and before is not None and before.paused_from is Status.BOOKED
        )
    ):
        notify(batch, item, "campaign_started", after)
    elif trigger is Trigger.END and to is Status.CLOSED:
        went_live = ev.from_status is Status.LIVE or (
            before is not None and before.paused_from is Status.LIVE
        )
        outcome = (
            "It has stopped delivering ads."
            if went_live
            else "It never went live, so no ads were delivered."
        )
        notify(batch, item, "campaign_ended", after, {"went_live": went_live, "outcome": outcome})
    elif ev.rule == "T12":
        notify(batch, item, "review_expired", after)
    elif ev.rule == "T11":
        penalty = f"{ev.penalty.quantize().amount} {ev.penalty.currency}" if ev.penalty else "none"
        notify(
            batch,
            item,
            "campaign_cancelled_by_publisher",
            after,
            {"reason": ev.reason or "no reason given", "penalty": penalty},
        )
