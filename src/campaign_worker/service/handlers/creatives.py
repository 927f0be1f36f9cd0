"""Creatives (spec §3): register, edit, delete, pause, resume and their reviews."""

from __future__ import annotations

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.creatives import (
    CreativeDeleted,
    CreativeEvent,
    CreativeRegistered,
    CreativeStatusChanged,
    CreativeUpdated,
    decide_creative,
    evolve_creative,
)
from campaign_worker.domain.model import Creative
from campaign_worker.service import outbound as out
from campaign_worker.service.batch import Batch
from campaign_worker.service.handlers.route import Route
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.notifications import notify


def handle_creative(batch: Batch, item: Inbound, command: cmd.CreativeCommand) -> None:
    """creative.* commands and review.creative_* decisions."""
    campaign = batch.state.campaigns.get(command.campaign_id)
    creative = batch.state.creatives.get(command.campaign_id, {}).get(command.creative_id)
    product = batch.state.products.get(campaign.ad_product_id) if campaign is not None else None
    events = decide_creative(campaign, creative, command, item.actor, batch.now, product)
    assert campaign is not None
    batch.track(campaign.id)
    for ev in events:
        creative = evolve_creative(creative, ev)
        batch.put_creative(creative)
        batch.bump(campaign.id)
        batch.record(
            item,
            campaign.id,
            "creative",
            details={
                "creative_id": creative.id,
                "event": type(ev).__name__,
                "status": creative.status.value,
                "deleted": creative.deleted,
                "reason": getattr(ev, "reason", None),
            },
        )
        batch.emit(item, _creative_out(ev, creative))
        if isinstance(ev, CreativeStatusChanged) and ev.action.value in ("approve", "reject"):
            kind = f"creative_review_{'approved' if ev.action.value == 'approve' else 'rejected'}"
            data = {"creative_name": creative.name}
            if ev.reason:
                data["reason"] = ev.reason
            notify(
                batch, item, kind, batch.state.campaigns[campaign.id], data, creative_id=creative.id
            )


def _creative_out(ev: CreativeEvent, after: Creative) -> out.Outgoing:
    if isinstance(ev, CreativeRegistered):
        return out.CreativeStatusChanged(
            after.campaign_id, after.id, None, after.status.value, "registered"
        )
    if isinstance(ev, CreativeStatusChanged):
        return out.CreativeStatusChanged(
            after.campaign_id,
            after.id,
            ev.from_status.value,
            ev.to_status.value,
            ev.reason or ev.action.value,
        )
    if isinstance(ev, CreativeUpdated):
        return out.CreativeUpdated(
            after.campaign_id, after.id, list(ev.changes), after.status.value
        )
    assert isinstance(ev, CreativeDeleted)
    return out.CreativeDeleted(after.campaign_id, after.id)


ROUTES = (
    Route(
        (
            cmd.CreateCreative,
            cmd.UpdateCreative,
            cmd.DeleteCreative,
            cmd.PauseCreative,
            cmd.ResumeCreative,
            cmd.ApproveCreative,
            cmd.RejectCreative,
        ),
        handle_creative,
    ),
)
