"""Holds the publisher sets and clears (spec §4): suspension, reinstatement, landing page."""

from __future__ import annotations

from campaign_worker.domain import commands as cmd
from campaign_worker.service.batch import Batch
from campaign_worker.service.handlers.route import Route
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.reactions import apply_signal


def handle_hold_signal(batch: Batch, item: Inbound, command: cmd.ApplyHoldSignal) -> None:
    campaign = batch.campaign(item)
    apply_signal(batch, item, campaign.id, command.signal, item.actor, command.reason)


ROUTES = (Route((cmd.ApplyHoldSignal,), handle_hold_signal),)
