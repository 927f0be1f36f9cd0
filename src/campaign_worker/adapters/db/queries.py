"""Read-side queries for the CLI (campaign show)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker.adapters.db.tables import campaign_history, campaigns
from campaign_worker.adapters.db.uow import row_to_campaign
from campaign_worker.config import Settings
from campaign_worker.domain.lifecycle import display_status
from campaign_worker.service.outgoing import to_wire


async def load_report(engine: AsyncEngine, campaign_id: uuid.UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(campaigns).where(campaigns.c.id == campaign_id))).first()
        if row is None:
            return None
        campaign = row_to_campaign(row)
        history = (
            (
                await conn.execute(
                    select(campaign_history)
                    .where(campaign_history.c.campaign_id == campaign_id)
                    .order_by(campaign_history.c.version)
                )
            )
            .mappings()
            .all()
        )
    data = to_wire(campaign)
    data["budget"] = f"{campaign.budget.amount} {campaign.budget.currency}"
    data["display_status"] = display_status(campaign)
    return {
        "campaign": data,
        "history": [{k: to_wire(v) for k, v in h.items()} for h in history],
    }


async def campaign_report(settings: Settings, campaign_id: str) -> dict[str, Any] | None:
    try:
        cid = uuid.UUID(campaign_id)
    except ValueError:
        return None
    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        return await load_report(engine, cid)
    finally:
        await engine.dispose()
