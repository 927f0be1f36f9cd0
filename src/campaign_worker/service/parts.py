"""Handlers for a campaign's parts (spec §3, §4, §9): creatives, holds, catalog facts that set
holds, targeting categories, and duplication. Same shape as handlers.py: synchronous, over
state the processor loaded for the whole batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from campaign_worker.domain.creatives import (
    Creative,
    CreativeCommand,
    CreativeDeleted,
    CreativeEvent,
    CreativeRegistered,
    CreativeStatusChanged,
    CreativeUpdated,
    decide_creative,
    evolve_creative,
)
from campaign_worker.domain.duplication import CategoryState, duplicate
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.model import Actor, Campaign, Role
from campaign_worker.domain.serving import (
    HoldSignal,
    buyable_signal,
    evolve_holds,
    hold_changes,
)
from campaign_worker.service.envelope import to_wire
from campaign_worker.service.handlers import BatchContext, existing_campaign, refuse, schedule_view
from campaign_worker.service.inbound import Inbound, UpsertAdProduct
from campaign_worker.service.notifications import notify
from campaign_worker.service.unit_of_work import HistoryEntry


@dataclass(frozen=True)
class ApplyHoldSignal:
    """A message that sets or clears holds: suspend/reinstate, landing page status."""

    signal: HoldSignal
    reason: str | None = None


@dataclass(frozen=True)
class DuplicateCampaign:
    new_campaign_id: UUID


@dataclass(frozen=True)
class UpsertCategory:
    category_id: str
    state: CategoryState


def _history(
    ctx: BatchContext, item: Inbound, campaign_id: UUID, kind: str, details: dict[str, Any]
) -> None:
    ctx.history.append(
        HistoryEntry(
            campaign_id=campaign_id,
            version=ctx.campaigns[campaign_id].version,
            kind=kind,
            actor_role=item.actor.role.value,
            actor_id=item.actor.id,
            message_id=item.message_id,
            message_type=item.type,
            correlation_id=item.correlation_id,
            occurred_at=ctx.now,
            details=details,
        )
    )


# ------------------------------------------------------------------ creatives


def _creative_event_out(
    ctx: BatchContext, item: Inbound, ev: CreativeEvent, after: Creative
) -> None:
    cid = str(after.campaign_id)
    if isinstance(ev, CreativeRegistered):
        ctx.emit(
            item,
            "creative.status_changed",
            {
                "campaign_id": cid,
                "creative_id": after.id,
                "from": None,
                "to": after.status.value,
                "reason": "registered",
            },
        )
    elif isinstance(ev, CreativeStatusChanged):
        ctx.emit(
            item,
            "creative.status_changed",
            {
                "campaign_id": cid,
                "creative_id": after.id,
                "from": ev.from_status.value,
                "to": ev.to_status.value,
                "reason": ev.reason or ev.action.value,
            },
        )
    elif isinstance(ev, CreativeUpdated):
        ctx.emit(
            item,
            "creative.updated",
            {
                "campaign_id": cid,
                "creative_id": after.id,
                "changed": sorted(ev.changes),
                "status": after.status.value,
            },
        )
    elif isinstance(ev, CreativeDeleted):
        ctx.emit(item, "creative.deleted", {"campaign_id": cid, "creative_id": after.id})


def handle_creative(ctx: BatchContext, item: Inbound) -> None:
    """creative.* commands and review.creative_* decisions."""
    command: CreativeCommand = item.payload  # type: ignore[assignment]
    assert item.campaign_id is not None
    campaign = ctx.campaigns.get(item.campaign_id)
    creative = ctx.creatives.get(item.campaign_id, {}).get(command.creative_id)
    try:
        events = decide_creative(campaign, creative, command, item.actor, ctx.now)
    except Refusal as refusal:
        refuse(ctx, item, refusal)
        return
    assert campaign is not None
    ctx.track(campaign.id)
    for ev in events:
        creative = evolve_creative(creative, ev)
        ctx.creatives.setdefault(campaign.id, {})[creative.id] = creative
        ctx.changed_creatives[(campaign.id, creative.id)] = creative
        ctx.bump(campaign.id)
        _history(
            ctx,
            item,
            campaign.id,
            "creative",
            {
                "creative_id": creative.id,
                "event": type(ev).__name__,
                "status": creative.status.value,
                "deleted": creative.deleted,
                "reason": getattr(ev, "reason", None),
            },
        )
        _creative_event_out(ctx, item, ev, creative)
        if isinstance(ev, CreativeStatusChanged) and ev.action.value in ("approve", "reject"):
            kind = f"creative_review_{'approved' if ev.action.value == 'approve' else 'rejected'}"
            data = {"creative_name": creative.name}
            if ev.reason:
                data["reason"] = ev.reason
            notify(ctx, item, kind, ctx.campaigns[campaign.id], data, creative_id=creative.id)
    ctx.applied(item)


# ------------------------------------------------------------------ holds


def apply_signal(
    ctx: BatchContext,
    item: Inbound,
    campaign_id: UUID,
    signal: HoldSignal,
    actor: Actor,
    reason: str | None = None,
) -> None:
    """Apply a hold signal to one campaign; raises Refusal."""
    campaign = ctx.campaigns[campaign_id]
    ctx.track(campaign_id)
    holds = ctx.holds.get(campaign_id, frozenset())
    for change in hold_changes(campaign, holds, signal, actor, reason):
        holds = evolve_holds(holds, change)
        ctx.holds[campaign_id] = holds
        if signal is HoldSignal.SUSPENDED:
            ctx.suspension_reasons[campaign_id] = change.reason
        elif signal is HoldSignal.REINSTATED:
            ctx.suspension_reasons[campaign_id] = None
        ctx.changed_holds.add(campaign_id)
        ctx.bump(campaign_id)
        _history(
            ctx,
            item,
            campaign_id,
            "holds_changed",
            {
                "signal": signal.value,
                "added": sorted(h.value for h in change.added),
                "removed": sorted(h.value for h in change.removed),
                "reason": change.reason,
            },
        )


def handle_hold_signal(ctx: BatchContext, item: Inbound) -> None:
    payload: ApplyHoldSignal = item.payload  # type: ignore[assignment]
    if existing_campaign(ctx, item) is None:
        return
    assert item.campaign_id is not None
    try:
        apply_signal(ctx, item, item.campaign_id, payload.signal, item.actor, payload.reason)
    except Refusal as refusal:
        refuse(ctx, item, refusal)
        return
    ctx.applied(item)


def product_buyability(ctx: BatchContext, item: Inbound) -> None:
    """After a catalog upsert: every open campaign of the product gets `product_not_buyable`
    set or cleared (a catalog fact, applied as the system)."""
    assert isinstance(item.payload, UpsertAdProduct)
    product = item.payload.product
    signal = buyable_signal(product.buyable)
    system = Actor(Role.SYSTEM, "catalog")
    for cid, campaign in sorted(ctx.campaigns.items()):
        if campaign.ad_product_id == product.id:
            apply_signal(ctx, item, cid, signal, system)


def sync_buyability(ctx: BatchContext, item: Inbound, campaign: Campaign) -> None:
    """A campaign created for (or moved to) a product the catalog says cannot be bought
    starts with `product_not_buyable`; moved to a buyable one, it loses it."""
    product = ctx.products.get(campaign.ad_product_id)
    if product is not None:
        apply_signal(
            ctx, item, campaign.id, buyable_signal(product.buyable), Actor(Role.SYSTEM, "catalog")
        )


# ------------------------------------------------------------------ catalog categories


def handle_category(ctx: BatchContext, item: Inbound) -> None:
    payload: UpsertCategory = item.payload  # type: ignore[assignment]
    ctx.categories[payload.category_id] = payload.state
    ctx.changed_categories[payload.category_id] = payload.state
    ctx.applied(item)


# ------------------------------------------------------------------ duplication


def handle_duplicate(ctx: BatchContext, item: Inbound) -> None:
    payload: DuplicateCampaign = item.payload  # type: ignore[assignment]
    source = existing_campaign(ctx, item)
    if source is None:
        return
    if payload.new_campaign_id in ctx.campaigns:
        refuse(
            ctx,
            item,
            Refusal(
                RefusalCode.ALREADY_EXISTS, f"campaign {payload.new_campaign_id} already exists"
            ),
        )
        return
    try:
        result = duplicate(
            source,
            ctx.creatives.get(source.id, {}).values(),
            ctx.products.get(source.ad_product_id),
            ctx.categories,
            payload.new_campaign_id,
            ctx.now,
            actor=item.actor,
        )
    except Refusal as refusal:
        refuse(ctx, item, refusal)
        return
    new = result.campaign
    ctx.campaigns[new.id] = new
    ctx.changed_campaigns[new.id] = new
    ctx.creatives[new.id] = {c.id: c for c in result.creatives}
    ctx.holds[new.id] = frozenset()
    for c in result.creatives:
        ctx.changed_creatives[(new.id, c.id)] = c
    ctx.track(new.id)
    excluded = [{"creative_id": e.creative_id, "why": e.why.value} for e in result.excluded]
    ctx.history.append(
        HistoryEntry(
            campaign_id=new.id,
            version=new.version,
            kind="created",
            to_status=new.status.value,
            actor_role=item.actor.role.value,
            actor_id=item.actor.id,
            message_id=item.message_id,
            message_type=item.type,
            correlation_id=item.correlation_id,
            occurred_at=ctx.now,
            details={
                "duplicated_from": str(source.id),
                "campaign": to_wire(new),
                "creatives": [c.id for c in result.creatives],
                "excluded": excluded,
            },
        )
    )
    ctx.transitions[("", new.status.value)] += 1
    ctx.emit(
        item,
        "campaign.status_changed",
        {
            "campaign_id": str(new.id),
            "from": None,
            "to": new.status.value,
            "reason": "duplicated",
            "display_status": ctx.display(new),
            "version": new.version,
            "actor": {"role": item.actor.role.value, "id": item.actor.id},
            "schedule": to_wire(schedule_view(new)),
        },
        subject=str(new.id),
    )
    ctx.emit(
        item,
        "campaign.duplicated",
        {
            "source_campaign_id": str(source.id),
            "campaign_id": str(new.id),
            "copied": list(result.copied),
            "reset": list(result.reset),
            "excluded_creatives": excluded,
            "targeting_reset": result.targeting_reset,
            "targeting_removed": list(result.targeting_removed),
            "creatives": [
                {"source_creative_id": s, "creative_id": n} for s, n in result.creative_ids
            ],
        },
        subject=str(new.id),
    )
    ctx.applied(item)


def new_campaign_ids(item: Inbound) -> set[UUID]:
    """Campaigns besides the subject that a message creates (to lock and check)."""
    if isinstance(item.payload, DuplicateCampaign):
        return {item.payload.new_campaign_id}
    return set()
