"""Read-side queries for the CLI (`campaign show`, `campaign statement`).

Money leaves here in the currency's minor units (`1100.00 EUR`, `1100 JPY`), whatever the
scale of the NUMERIC column it was stored in.
"""

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
from campaign_worker.domain.model import Campaign, Status
from campaign_worker.domain.money import Money
from campaign_worker.domain.serving import serving_verdict
from campaign_worker.domain.settlement import Account, RefundStatus
from campaign_worker.service.envelope import to_wire
from campaign_worker.service.outbound import CampaignState


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
    data["budget"] = money_text(campaign.budget)
    data["display_status"] = verdict.display_status
    state = CampaignState.of(
        campaign,
        creatives_of.values(),
        verdict,
        account.ledger.spent if account is not None else None,
        row.updated_at,
    )
    return {
        "campaign": data,
        # what the latest campaign.state record of this campaign holds
        "state": state.data(),
        "waiting_for": waiting_for(campaign, account),
        "serving": {
            "serving": verdict.serving,
            "display_status": verdict.display_status,
            "holds": [h.value for h in verdict.holds],
            "why_not_serving": list(verdict.reasons),
            "suspension_reason": extras.suspension_reasons[campaign_id],
        },
        "creatives": [to_wire(c) for c in creatives_of.values()],
        "ledger": [_ledger_row(r) for r in ledger],
        "statement": statement["document"] if statement else None,
        "refunds": [to_wire(r) for r in account.refunds] if account else [],
        "history": [{k: to_wire(v) for k, v in h.items()} for h in history],
    }


def money_text(money: Money) -> str:
    """`1100.00 EUR`: the amount in the currency's minor units, then the code."""
    wire = money.to_wire()
    return f"{wire['amount']} {wire['currency']}"


def _ledger_row(row: Any) -> dict[str, Any]:
    data = {k: to_wire(v) for k, v in row.items()}
    data["amount"] = Money(row["amount"], row["currency"]).to_wire()["amount"]
    return data


_CHARGE_WANTED = {Status.SUBMITTED, Status.BOOKED, Status.LIVE, Status.PAUSED}


def waiting_for(campaign: Campaign, account: Account | None) -> dict[str, Any]:
    """What the campaign waits for: an unconfirmed card charge, its next due start or end,
    the statement of a closed campaign (the ad server's final report, or the settlement
    grace), refunds not yet confirmed."""
    charge = account.current_charge if account is not None else None
    pending_charge = None
    confirmed = account is not None and account.charge_confirmed
    if charge is not None and not confirmed and campaign.status in _CHARGE_WANTED:
        pending_charge = {"charge_id": charge.charge_id, "amount": charge.amount.to_wire()}
    next_due = None
    if campaign.status is Status.BOOKED:
        next_due = {"trigger": "start", "at": to_wire(campaign.start_at)}
    elif campaign.status in (Status.LIVE, Status.PAUSED):
        next_due = {"trigger": "end", "at": to_wire(campaign.end_at)}
    refunds = [
        {
            "refund_id": r.refund_id,
            "amount": r.amount.to_wire(),
            "status": r.status.value,
            "reason": to_wire(r.reason),
            "last_error": r.last_error,
        }
        for r in (account.refunds if account is not None else ())
        if r.status is not RefundStatus.SUCCEEDED
    ]
    statement = None
    if account is not None and account.settlement_pending:
        statement = {"due_at": to_wire(account.settle_at), "or_when": "delivery.final"}
    return {
        "charge": pending_charge,
        "next_due": next_due,
        "statement": statement,
        "refunds": refunds,
    }


async def campaign_report(settings: Settings, campaign_id: str) -> dict[str, Any] | None:
    try:
        cid = uuid.UUID(campaign_id)
    except ValueError:
        return None
    engine = create_async_engine(
        settings.sqlalchemy_url,
        connect_args={"timeout": 10, **settings.postgres_connect_args},
    )
    try:
        return await load_report(engine, cid)
    finally:
        await engine.dispose()
