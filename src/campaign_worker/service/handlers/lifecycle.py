"""The campaign lifecycle (spec §1, §2): every campaign command, review decision and schedule
trigger goes through the transition table (`domain/lifecycle.py`), then through what the
change sets off (`service/reactions.py`)."""

from __future__ import annotations

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.events import CampaignCreated, CampaignStatusChanged
from campaign_worker.domain.lifecycle import decide, evolve
from campaign_worker.domain.settlement import MoneyEvent
from campaign_worker.service.batch import Batch
from campaign_worker.service.handlers.route import Route, Wants
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.reactions import (
    apply_money,
    initial_holds,
    notify_status_change,
    record_change,
    status_money,
)


def handle_lifecycle(batch: Batch, item: Inbound, command: cmd.LifecycleCommand) -> None:
    """Decide, then apply: the money side is decided before anything is applied, because it
    may still refuse the command (e.g. a penalty in another currency)."""
    campaign = batch.state.campaigns.get(command.campaign_id)
    batch.track(command.campaign_id)
    events = decide(campaign, command, item.actor, batch.now, batch.state.products)
    after, money_events = campaign, list[MoneyEvent]()
    for ev in events:
        after = evolve(after, ev)
        if isinstance(ev, CampaignStatusChanged):
            money_events += status_money(batch, after, ev)
    for ev in events:
        before, campaign = campaign, evolve(campaign, ev)
        record_change(batch, item, before, campaign, ev)
        notify_status_change(batch, item, before, campaign, ev)
    assert campaign is not None
    batch.put_campaign(campaign)
    apply_money(batch, item, campaign, money_events)
    if any(
        isinstance(ev, CampaignCreated) or "ad_product_id" in getattr(ev, "changes", {})
        for ev in events
    ):
        initial_holds(batch, item, campaign)


def _wants(command: cmd.LifecycleCommand, item: Inbound) -> Wants:
    products: set[str] = set()
    if isinstance(command, cmd.CreateCampaign):
        products.add(command.ad_product_id)
    elif isinstance(command, cmd.UpdateCampaign) and "ad_product_id" in command.changes:
        products.add(str(command.changes["ad_product_id"]))
    return Wants(campaigns=frozenset({command.campaign_id}), products=frozenset(products))


ROUTES = (
    Route(
        (
            cmd.CreateCampaign,
            cmd.UpdateCampaign,
            cmd.SubmitCampaign,
            cmd.PauseCampaign,
            cmd.ResumeCampaign,
            cmd.ExtendEnd,
            cmd.CancelCampaign,
            cmd.ApproveCampaign,
            cmd.RejectCampaign,
        ),
        handle_lifecycle,
        _wants,
    ),
    Route((cmd.StartDue, cmd.EndDue), handle_lifecycle, _wants, ends_first=False),
)
