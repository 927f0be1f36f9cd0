"""One plain function per message type, routed by a dict.

Handlers are synchronous on purpose: the processor loads (and locks) everything a batch can
touch up front, each handler decides against that in-memory state, and the processor writes
the results back in a few batch statements. No handler does I/O of its own, so a batch of
500 messages costs the same handful of round trips as a batch of one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from campaign_worker import topics
from campaign_worker.domain import commands as cmd
from campaign_worker.domain.errors import Refusal
from campaign_worker.domain.events import (
    CampaignCreated,
    CampaignStatusChanged,
    CampaignUpdated,
    Event,
)
from campaign_worker.domain.lifecycle import decide, display_status, evolve
from campaign_worker.domain.model import AdProduct, Campaign
from campaign_worker.service.inbound import DeleteAdProduct, Inbound, UpsertAdProduct
from campaign_worker.service.outgoing import OutboxMessage, event, to_wire
from campaign_worker.service.unit_of_work import HistoryEntry


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


def _subject(item: Inbound) -> str | None:
    return str(item.campaign_id) if item.campaign_id is not None else None


def _actor(item: Inbound) -> dict[str, Any]:
    return {"role": item.actor.role.value, "id": item.actor.id}


def refuse(ctx: BatchContext, item: Inbound, refusal: Refusal) -> None:
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


def _record(ctx: BatchContext, item: Inbound, after: Campaign, ev: Event) -> None:
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
                "display_status": display_status(after),
                "version": after.version,
                "actor": _actor(item),
            },
        )
    elif isinstance(ev, CampaignStatusChanged):
        reason = ev.reason if ev.reason is not None else ev.trigger.value
        details: dict[str, Any] = {"reason": ev.reason}
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
            "display_status": display_status(after),
            "version": after.version,
            "actor": _actor(item),
        }
        if ev.penalty is not None:
            data["penalty"] = to_wire(ev.penalty)
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
            },
        )


def handle_lifecycle(ctx: BatchContext, item: Inbound) -> None:
    """Every campaign command, review decision and schedule trigger: decide, then apply."""
    if item.refusal is not None:
        refuse(ctx, item, item.refusal)
        return
    assert item.campaign_id is not None
    campaign = ctx.campaigns.get(item.campaign_id)
    try:
        events = decide(campaign, item.payload, item.actor, ctx.now, ctx.products)  # type: ignore[arg-type]
    except Refusal as refusal:
        refuse(ctx, item, refusal)
        return
    for ev in events:
        campaign = evolve(campaign, ev)
        _record(ctx, item, campaign, ev)
    assert campaign is not None
    ctx.campaigns[campaign.id] = campaign
    ctx.changed_campaigns[campaign.id] = campaign
    ctx.outcomes[(item.source.topic, item.type, "applied")] += 1


def handle_product_upserted(ctx: BatchContext, item: Inbound) -> None:
    assert isinstance(item.payload, UpsertAdProduct)
    product = item.payload.product
    ctx.products[product.id] = product
    ctx.changed_products[product.id] = product
    ctx.outcomes[(item.source.topic, item.type, "applied")] += 1


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
    ctx.outcomes[(item.source.topic, item.type, "applied")] += 1


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
