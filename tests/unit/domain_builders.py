"""Builders shared by the domain unit tests (no pytest fixtures: plain functions/constants)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

from campaign_worker.domain.commands import Command, CreateCampaign
from campaign_worker.domain.events import Event
from campaign_worker.domain.lifecycle import decide, evolve
from campaign_worker.domain.model import (
    Actor,
    AdProduct,
    BillingType,
    Campaign,
    Contact,
    FrequencyCap,
    Role,
    Status,
    Targeting,
)
from campaign_worker.domain.money import Money

ADVERTISER_ID = "adv-1"
OWNER = Actor(Role.ADVERTISER, ADVERTISER_ID)
OTHER_ADVERTISER = Actor(Role.ADVERTISER, "adv-2")
PUBLISHER = Actor(Role.PUBLISHER, "pub-1")
SYSTEM = Actor(Role.SYSTEM, None)

START = datetime(2026, 12, 1, tzinfo=UTC)
END = datetime(2026, 12, 31, tzinfo=UTC)
BEFORE_START = START - timedelta(days=10)
DURING = START + timedelta(days=5)
AFTER_END = END + timedelta(hours=1)


def _product(pid: str, *, deleted: bool = False) -> AdProduct:
    return AdProduct(
        id=pid,
        name=f"Product {pid}",
        unit_ids=("unit-a", "unit-b"),
        unit_set_valid=True,
        buyable=True,
        deleted=deleted,
    )


PRODUCTS: Mapping[str, AdProduct] = {
    "prod-1": _product("prod-1"),
    "prod-2": _product("prod-2"),
    "prod-gone": _product("prod-gone", deleted=True),
}


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def create_command(campaign_id: UUID | None = None, /, **overrides: object) -> CreateCampaign:
    command = CreateCampaign(
        campaign_id=campaign_id or uuid4(),
        advertiser_id=ADVERTISER_ID,
        title="Winter sale",
        ad_product_id="prod-1",
        budget=eur("1250.00"),
        billing_type=BillingType.CARD,
        start_at=START,
        end_at=END,
        targeting=Targeting(categories=("books",), groups=()),
        frequency_cap=FrequencyCap(impressions=3, per="day"),
        contact=Contact(name="Ada", email="ada@example.com"),
        timezone="Europe/Berlin",
    )
    return replace(command, **overrides)  # type: ignore[arg-type]


def campaign_in(status: Status, **overrides: object) -> Campaign:
    """A campaign sitting in `status` (built directly, independent of the lifecycle code).
    A PAUSED campaign is paused from LIVE unless `paused_from` is given."""
    campaign = Campaign(
        id=uuid4(),
        advertiser_id=ADVERTISER_ID,
        title="Winter sale",
        ad_product_id="prod-1",
        budget=Money(Decimal("1250.00"), "EUR"),
        billing_type=BillingType.CARD,
        start_at=START,
        end_at=END,
        targeting=Targeting(categories=("books",)),
        frequency_cap=FrequencyCap(impressions=3, per="day"),
        contact=Contact(name="Ada", email="ada@example.com"),
        timezone="Europe/Berlin",
        status=status,
        paused_from=Status.LIVE if status is Status.PAUSED else None,
        version=5,
        rejection_reason="too vague" if status is Status.REJECTED else None,
    )
    return replace(campaign, **overrides)  # type: ignore[arg-type]


def run(
    campaign: Campaign | None,
    command: Command,
    actor: Actor,
    now: datetime = BEFORE_START,
    products: Mapping[str, AdProduct] = PRODUCTS,
) -> tuple[Campaign, list[Event]]:
    """decide + evolve: the campaign after the command, and the events."""
    events = decide(campaign, command, actor, now, products)
    result = campaign
    for event in events:
        result = evolve(result, event)
    assert result is not None
    return result, events
