"""Duplication (spec §9): copy a campaign into a new DRAFT."""

from __future__ import annotations

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.duplication import duplicate
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.service import outbound as out
from campaign_worker.service.batch import Batch
from campaign_worker.service.envelope import to_wire
from campaign_worker.service.handlers.route import Route, Wants
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.reactions import initial_holds, record_created


def handle_duplicate(batch: Batch, item: Inbound, command: cmd.DuplicateCampaign) -> None:
    source = batch.campaign(item)
    if command.new_campaign_id in batch.state.campaigns:
        raise Refusal(
            RefusalCode.ALREADY_EXISTS, f"campaign {command.new_campaign_id} already exists"
        )
    result = duplicate(
        source,
        batch.state.creatives.get(source.id, {}).values(),
        batch.state.products.get(source.ad_product_id),
        batch.state.categories,
        command.new_campaign_id,
        batch.now,
        actor=item.actor,
    )
    new = result.campaign
    batch.put_campaign(new)
    for creative in result.creatives:
        batch.put_creative(creative)
    batch.track(new.id)
    excluded = [(e.creative_id, e.why.value) for e in result.excluded]
    record_created(
        batch,
        item,
        new,
        "duplicated",
        {
            "duplicated_from": str(source.id),
            "campaign": to_wire(new),
            "creatives": [c.id for c in result.creatives],
            "excluded": [{"creative_id": c, "why": why} for c, why in excluded],
        },
    )
    batch.emit(
        item,
        out.CampaignDuplicated(
            source_campaign_id=source.id,
            campaign_id=new.id,
            copied=result.copied,
            reset=result.reset,
            excluded_creatives=excluded,
            targeting_reset=result.targeting_reset,
            targeting_removed=result.targeting_removed,
            creatives=result.creative_ids,
        ),
        subject=new.id,
    )
    # every creative that comes into existence is announced, a copy like a registered one
    for creative in result.creatives:
        batch.emit(
            item,
            out.CreativeStatusChanged(
                new.id, creative.id, None, creative.status.value, "duplicated"
            ),
            subject=new.id,
        )
    initial_holds(batch, item, new)


def _wants(command: cmd.DuplicateCampaign, item: Inbound) -> Wants:
    return Wants(campaigns=frozenset({command.campaign_id, command.new_campaign_id}))


ROUTES = (Route((cmd.DuplicateCampaign,), handle_duplicate, _wants),)
