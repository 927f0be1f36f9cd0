"""Read-side queries for the CLI (campaign show)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker.adapters.db.tables import (
    campaign_history,
    campaigns,
    ledger_entries,
    statements,
)
from campaign_worker.adapters.db.uow import SqlUnitOfWork, row_to_campaign
from campaign_worker.config import Settings
from campaign_worker.domain.serving import serving_verdict
from campaign_worker.service.envelope import to_wire


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
        extras = await SqlUnitOfWork.read_extras(conn, [campaign_id])
        ledger = (
            (
                await conn.execute(
                    select(ledger_entries)
                    .where(ledger_entries.c.campaign_id == campaign_id)
                    .order_by(ledger_entries.c.id)
                )
            )
            .mappings()
            .all()
        )
        statement = (
            (await conn.execute(select(statements).where(statements.c.campaign_id == campaign_id)))
            .mappings()
            .first()
        )
    creatives_of = extras.creatives[campaign_id]
    account = extras.accounts.get(campaign_id)
    verdict = serving_verdict(
        campaign,
        creatives_of.values(),
        extras.holds[campaign_id],
        charge_confirmed=account is not None and account.charge_confirmed,
    )
    data = to_wire(campaign)
    data["budget"] = f"{campaign.budget.amount} {campaign.budget.currency}"
    data["display_status"] = verdict.display_status
    return {
        "campaign": data,
        "serving": {
            "serving": verdict.serving,
            "display_status": verdict.display_status,
            "holds": [h.value for h in verdict.holds],
            "why_not_serving": list(verdict.reasons),
            "suspension_reason": extras.suspension_reasons[campaign_id],
        },
        "creatives": [to_wire(c) for c in creatives_of.values()],
        "ledger": [{k: to_wire(v) for k, v in r.items()} for r in ledger],
        "statement": statement["document"] if statement else None,
        "refunds": [to_wire(r) for r in account.refunds] if account else [],
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
