"""One plain function per message type, routed by a dict.

Handlers are synchronous on purpose: the processor loads (and locks) everything a batch can
touch up front, each handler decides against that in-memory state, and the processor writes
the results back in a few batch statements. No handler does I/O of its own, so a batch of
500 messages costs the same handful of round trips as a batch of one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from campaign_worker import topics
from campaign_worker.domain import commands as cmd
from campaign_worker.domain.creatives import Creative
from campaign_worker.domain.duplication import CategoryState
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.events import (
    CampaignCreated,
    CampaignStatusChanged,
    CampaignUpdated,
    Event,
)
from campaign_worker.domain.lifecycle import decide, evolve
from campaign_worker.domain.model import AdProduct, Campaign, Status
from campaign_worker.domain.serving import Hold, Verdict, serving_verdict, verdict_changed
from campaign_worker.domain.settlement import DEFAULT_RULES, Account, MoneyRules, Statement
from campaign_worker.service.envelope import OutboxMessage, event, to_wire
from campaign_worker.service.inbound import DeleteAdProduct, Inbound, UpsertAdProduct
from campaign_worker.service.notifications import notify_status_change
from campaign_worker.service.unit_of_work import HistoryEntry, LedgerRow, NotificationRequest

log = logging.getLogger(__name__)


@dataclass
class BatchContext:
    """The state a batch works on and everything it produces, written in one transaction."""

    now: datetime
    campaigns: dict[UUID, Campaign]
    products: dict[str, AdProduct]
    changed_campaigns: dict[UUID, Campaign] = field(default_factory=dict)
    changed_products: dict[str, AdProduct] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    lateness: list[tuple[str, float]] = field(default_factory=list)  # (trigger, seconds)
    size: int = 0  # records in the batch, duplicates and dead letters included
    notifications: list[NotificationRequest] = field(default_factory=list)  # notify() appends
    # creatives (tombstones included) and stored holds of the campaigns in `campaigns`
    creatives: dict[UUID, dict[str, Creative]] = field(default_factory=dict)
    holds: dict[UUID, frozenset[Hold]] = field(default_factory=dict)
    suspension_reasons: dict[UUID, str | None] = field(default_factory=dict)
    categories: dict[str, CategoryState] = field(default_factory=dict)
    changed_creatives: dict[tuple[UUID, str], Creative] = field(default_factory=dict)
    changed_holds: set[UUID] = field(default_factory=set)
    changed_categories: dict[str, CategoryState] = field(default_factory=dict)
    # the serving verdict last published per campaign, and the campaigns the current message
    # touches (see track / flush_serving)
    verdicts: dict[UUID, Verdict | None] = field(default_factory=dict)
    tracked: set[UUID] = field(default_factory=set)
    # money (service/money.py): accounts of campaigns where money moved, what to write
    accounts: dict[UUID, Account] = field(default_factory=dict)
    changed_accounts: set[UUID] = field(default_factory=set)
    ledger_rows: list[LedgerRow] = field(default_factory=list)
    new_statements: list[Statement] = field(default_factory=list)
    status_history: dict[UUID, list[tuple[datetime, Status]]] = field(default_factory=dict)
    rules: MoneyRules = DEFAULT_RULES

    def charge_confirmed(self, campaign_id: UUID) -> bool:
        account = self.accounts.get(campaign_id)
        return account is not None and account.charge_confirmed

    def verdict(self, campaign_id: UUID) -> Verdict | None:
        campaign = self.campaigns.get(campaign_id)
        return self.verdict_of(campaign) if campaign is not None else None

    def verdict_of(self, campaign: Campaign) -> Verdict:
        """The serving verdict of `campaign` against the batch's creatives, holds and money."""
        return serving_verdict(
            campaign,
            self.creatives.get(campaign.id, {}).values(),
            self.holds.get(campaign.id, frozenset()),
            self.charge_confirmed(campaign.id),
        )

    def display(self, campaign: Campaign) -> str:
        """The display status of spec §4 (holds, creatives and payment included, e.g.
        Activating while a card charge is unconfirmed)."""
        return self.verdict_of(campaign).display_status

    def track(self, campaign_id: UUID) -> None:
        """Remember the verdict before the current message changes this campaign."""
        if campaign_id not in self.verdicts:
            self.verdicts[campaign_id] = self.verdict(campaign_id)
        self.tracked.add(campaign_id)

    def bump(self, campaign_id: UUID) -> Campaign:
        """A change to the campaign's parts (creatives, holds) is a new campaign version."""
        campaign = replace(
            self.campaigns[campaign_id], version=self.campaigns[campaign_id].version + 1
        )
        self.campaigns[campaign_id] = campaign
        self.changed_campaigns[campaign_id] = campaign
        return campaign

    def applied(self, item: Inbound) -> None:
        """Count `item` as applied (for the messages metric)."""
        self.outcomes[(item.source.topic, item.type, "applied")] += 1

    def emit(
        self,
        item: Inbound,
        type: str,
        data: dict[str, Any],
        *,
        topic: str = topics.EVENTS,
        subject: str | None = None,
    ) -> None:
        self.outbox.append(
            event(
                topic=topic,
                type=type,
                subject=subject if subject is not None else _subject(item),
                data=data,
                now=self.now,
                causation_id=item.message_id,
                correlation_id=item.correlation_id,
            )
        )


def flush_serving(ctx: BatchContext, item: Inbound) -> None:
    """One `campaign.serving_changed` per campaign whose verdict, hold set or display status
    the message changed, with the full list of reasons (spec §4)."""
    for cid in sorted(ctx.tracked):
        after = ctx.verdict(cid)
        if after is None:
            continue
        if verdict_changed(ctx.verdicts.get(cid), after):
            ctx.verdicts[cid] = after
            ctx.emit(
                item,
                "campaign.serving_changed",
                {
                    "campaign_id": str(cid),
                    "serving": after.serving,
                    "holds": [h.value for h in after.holds],
                    "display_status": after.display_status,
                    "reasons": list(after.reasons),
                    "version": ctx.campaigns[cid].version,
                },
                subject=str(cid),
            )
    ctx.tracked.clear()


def _subject(item: Inbound) -> str | None:
    return str(item.campaign_id) if item.campaign_id is not None else None


def _actor(item: Inbound) -> dict[str, Any]:
    return {"role": item.actor.role.value, "id": item.actor.id}


def refuse(ctx: BatchContext, item: Inbound, refusal: Refusal) -> None:
    log.info(
        "refused %s: %s (%s)",
        item.type,
        refusal.code.value,
        refusal.message[:300],
        extra={
            "message_id": item.message_id,
            "campaign_id": _subject(item),
            "correlation_id": item.correlation_id,
        },
    )
    ctx.refusals[refusal.code.value] += 1
    ctx.outcomes[(item.source.topic, item.type, "rejected")] += 1
    ctx.emit(
        item,
        "command.rejected",
        {
            "command_id": item.message_id,
            "command_type": item.type,
            "code": refusal.code.value,
            "message": refusal.message,
            "campaign_id": _subject(item),
        },
    )


def existing_campaign(ctx: BatchContext, item: Inbound) -> Campaign | None:
    """The message's campaign, or None after refusing the message with `not_found`."""
    assert item.campaign_id is not None
    campaign = ctx.campaigns.get(item.campaign_id)
    if campaign is None:
        refuse(
            ctx, item, Refusal(RefusalCode.NOT_FOUND, f"campaign {item.campaign_id} does not exist")
        )
    return campaign


def schedule_view(c: Campaign) -> dict[str, Any]:
    """Start and end as instants and, for a campaign with a time zone, as local times too."""
    view: dict[str, Any] = {"start_at": c.start_at, "end_at": c.end_at, "timezone": c.timezone}
    if c.timezone:
        zone = ZoneInfo(c.timezone)
        view["start_local"] = c.start_at.astimezone(zone).isoformat()
        view["end_local"] = c.end_at.astimezone(zone).isoformat()
    return view


def _lateness(
    ctx: BatchContext, item: Inbound, before: Campaign | None, ev: CampaignStatusChanged
) -> dict[str, Any]:
    """How late a time-driven transition was applied (spec §11), measured from the instant
    it was due: the start for `start`, the end for `end` (also when a missed start closes
    the campaign directly)."""
    if before is None or not isinstance(item.payload, cmd.StartDue | cmd.EndDue):
        return {}
    due = before.start_at if ev.trigger.value == "start" else before.end_at
    seconds = max(0.0, (ctx.now - due).total_seconds())
    ctx.lateness.append((ev.trigger.value, seconds))
    return {"due_at": to_wire(due), "lateness_seconds": round(seconds, 3)}


def _record(
    ctx: BatchContext, item: Inbound, before: Campaign | None, after: Campaign, ev: Event
) -> None:
    common: dict[str, Any] = {
        "campaign_id": after.id,
        "version": after.version,
        "actor_role": item.actor.role.value,
        "actor_id": item.actor.id,
        "message_id": item.message_id,
        "message_type": item.type,
        "correlation_id": item.correlation_id,
        "occurred_at": ctx.now,
    }
    if isinstance(ev, CampaignCreated):
        ctx.history.append(
            HistoryEntry(
                kind="created",
                to_status=after.status.value,
                details={"campaign": to_wire(after)},
                **common,
            )
        )
        ctx.transitions[("", after.status.value)] += 1
        ctx.emit(
            item,
            "campaign.status_changed",
            {
                "campaign_id": str(after.id),
                "from": None,
                "to": after.status.value,
                "reason": "created",
                "display_status": ctx.display(after),
                "version": after.version,
                "actor": _actor(item),
                "schedule": to_wire(schedule_view(after)),
            },
        )
    elif isinstance(ev, CampaignStatusChanged):
        reason = ev.reason if ev.reason is not None else ev.trigger.value
        details: dict[str, Any] = {"reason": ev.reason, **_lateness(ctx, item, before, ev)}
        if ev.penalty is not None:
            details["penalty"] = to_wire(ev.penalty)
        ctx.history.append(
            HistoryEntry(
                kind="status_changed",
                from_status=ev.from_status.value,
                to_status=ev.to_status.value,
                trigger=ev.trigger.value,
                details=details,
                **common,
            )
        )
        ctx.transitions[(ev.from_status.value, ev.to_status.value)] += 1
        data: dict[str, Any] = {
            "campaign_id": str(after.id),
            "from": ev.from_status.value,
            "to": ev.to_status.value,
            "reason": reason,
            "trigger": ev.trigger.value,
            "display_status": ctx.display(after),
            "version": after.version,
            "actor": _actor(item),
        }
        if ev.penalty is not None:
            data["penalty"] = to_wire(ev.penalty)
        if "lateness_seconds" in details:
            data["due_at"] = details["due_at"]
            data["lateness_seconds"] = details["lateness_seconds"]
        data["schedule"] = to_wire(schedule_view(after))
        ctx.emit(item, "campaign.status_changed", data)
    elif isinstance(ev, CampaignUpdated):
        changed = sorted(ev.changes)
        ctx.history.append(
            HistoryEntry(kind="updated", details={"changes": to_wire(dict(ev.changes))}, **common)
        )
        ctx.emit(
            item,
            "campaign.updated",
            {
                "campaign_id": str(after.id),
                "changed": changed,
                "values": to_wire(dict(ev.changes)),
                "version": after.version,
                "actor": _actor(item),
                "schedule": to_wire(schedule_view(after)),
            },
        )


def handle_lifecycle(ctx: BatchContext, item: Inbound) -> None:
    """Every campaign command, review decision and schedule trigger: decide, then apply."""
    if item.refusal is not None:
        refuse(ctx, item, item.refusal)
        return
    assert item.campaign_id is not None
    campaign = ctx.campaigns.get(item.campaign_id)
    ctx.track(item.campaign_id)
    from campaign_worker.service import money  # money builds on this module

    try:
        events = decide(campaign, item.payload, item.actor, ctx.now, ctx.products)  # type: ignore[arg-type]
        # the money side is decided before anything is applied: it may still refuse
        after, money_events = campaign, []
        for ev in events:
            after = evolve(after, ev)
            if isinstance(ev, CampaignStatusChanged):
                money_events += money.status_money(ctx, after, ev)
    except Refusal as refusal:
        refuse(ctx, item, refusal)
        return
    for ev in events:
        before, campaign = campaign, evolve(campaign, ev)
        _record(ctx, item, before, campaign, ev)
        notify_status_change(ctx, item, before, campaign, ev)
    assert campaign is not None
    ctx.campaigns[campaign.id] = campaign
    ctx.changed_campaigns[campaign.id] = campaign
    money.apply_money(ctx, item, campaign, money_events)
    if any(
        isinstance(ev, CampaignCreated) or "ad_product_id" in getattr(ev, "changes", {})
        for ev in events
    ):
        from campaign_worker.service.parts import sync_buyability  # parts builds on this module

        sync_buyability(ctx, item, campaign)
    ctx.applied(item)


def handle_product_upserted(ctx: BatchContext, item: Inbound) -> None:
    assert isinstance(item.payload, UpsertAdProduct)
    product = item.payload.product
    ctx.products[product.id] = product
    ctx.changed_products[product.id] = product
    ctx.applied(item)


def handle_product_deleted(ctx: BatchContext, item: Inbound) -> None:
    assert isinstance(item.payload, DeleteAdProduct)
    known = ctx.products.get(item.payload.ad_product_id)
    deleted = (
        replace(known, deleted=True)
        if known is not None
        else AdProduct(
            id=item.payload.ad_product_id,
            name="",
            unit_ids=(),
            unit_set_valid=False,
            buyable=False,
            deleted=True,
        )
    )
    ctx.products[deleted.id] = deleted
    ctx.changed_products[deleted.id] = deleted
    ctx.applied(item)


Handler = Callable[[BatchContext, Inbound], None]

HANDLERS: dict[str, Handler] = {
    "campaign.create": handle_lifecycle,
    "campaign.update": handle_lifecycle,
    "campaign.submit": handle_lifecycle,
    "campaign.pause": handle_lifecycle,
    "campaign.resume": handle_lifecycle,
    "campaign.extend_end": handle_lifecycle,
    "campaign.cancel": handle_lifecycle,
    "review.campaign_approved": handle_lifecycle,
    "review.campaign_rejected": handle_lifecycle,
    "schedule.start_due": handle_lifecycle,
    "schedule.end_due": handle_lifecycle,
    "catalog.ad_product_upserted": handle_product_upserted,
    "catalog.ad_product_deleted": handle_product_deleted,
}


def products_needed(item: Inbound, campaigns: dict[UUID, Campaign]) -> set[str]:
    """Catalog entries a message may consult, so they are loaded with the batch."""
    payload = item.payload
    if isinstance(payload, cmd.CreateCampaign):
        return {payload.ad_product_id}
    ids: set[str] = set()
    if isinstance(payload, cmd.UpdateCampaign) and "ad_product_id" in payload.changes:
        ids.add(str(payload.changes["ad_product_id"]))
    if item.campaign_id is not None and item.campaign_id in campaigns:
        ids.add(campaigns[item.campaign_id].ad_product_id)
    return ids
