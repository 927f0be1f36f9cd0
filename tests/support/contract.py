"""Builders of contract messages for e2e tests, and a driver that sends one and waits for
the worker's answer to it (the outgoing event whose causationid is its id)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.kafka_io import Received, cloudevent

PRODUCT = "prod-banner"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def product_event(product_id: str = PRODUCT, **overrides: Any) -> dict[str, Any]:
    data = {
        "ad_product_id": product_id,
        "name": "Homepage banner",
        "unit_ids": ["unit-728x90"],
        "unit_set_valid": True,
        "buyable": True,
    }
    data.update(overrides)
    return cloudevent(
        "catalog.ad_product_upserted", product_id, data, actorrole="publisher", actorid="pub-1"
    )


def create_data(advertiser: str = "adv-1", **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "advertiser_id": advertiser,
        "title": "Winter sale",
        "ad_product_id": PRODUCT,
        "budget": {"amount": "1000.00", "currency": "EUR"},
        "billing_type": "manual",
        "start_at": iso(now + timedelta(days=30)),
        "end_at": iso(now + timedelta(days=60)),
        "contact": {"name": "Ada", "email": "ada@example.com"},
    }
    data.update(overrides)
    return data


def create_event(campaign_id: str, advertiser: str = "adv-1", **overrides: Any) -> dict[str, Any]:
    return cloudevent(
        "campaign.create", campaign_id, create_data(advertiser, **overrides), actorid=advertiser
    )


TOPIC_OF = {
    "campaign": "campaign.commands",
    "creative": "campaign.commands",
    "refund": "campaign.commands",
    "review": "campaign.reviews",
    "payment": "campaign.payments",
    "schedule": "campaign.schedule",
    "delivery": "campaign.delivery",
    "catalog": "campaign.catalog",
}

ACTORS = {
    "advertiser": ("advertiser", "adv-1"),
    "other": ("advertiser", "adv-2"),
    "publisher": ("publisher", "pub-1"),
    "system": ("system", "scheduler"),
}


class Driver:
    """Send a command as someone and get the worker's answer to it."""

    def __init__(self, harness: Any) -> None:
        self.h = harness

    def build(
        self,
        type_: str,
        campaign_id: str,
        data: dict[str, Any] | None = None,
        *,
        as_: str = "advertiser",
        id_: str | None = None,
        correlationid: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """The topic and CloudEvent for a command sent by `as_`."""
        role, actor_id = ACTORS[as_]
        event = cloudevent(
            type_,
            campaign_id,
            data or {},
            actorrole=role,
            actorid=actor_id,
            id_=id_,
            correlationid=correlationid,
        )
        return TOPIC_OF[type_.split(".")[0]], event

    async def send(
        self, type_: str, campaign_id: str, data: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        topic, event = self.build(type_, campaign_id, data, **kw)
        await self.h.up.send(topic, event)
        return event

    async def answer(self, event: dict[str, Any], timeout: float = 30) -> Received:
        """The worker's answer to `event`: its first outcome event on campaign.events (a
        status change, an update, a creative event or a refusal; serving changes that may
        follow are side effects, read them with `of_type`)."""
        got = await self.h.down.wait_for(
            lambda r: (
                r.topic == "campaign.events"
                and r.event.get("causationid") == event["id"]
                and r.type != "campaign.serving_changed"
            ),
            timeout=timeout,
        )
        return got[0]

    async def do(
        self, type_: str, campaign_id: str, data: dict[str, Any] | None = None, **kw: Any
    ) -> Received:
        return await self.answer(await self.send(type_, campaign_id, data, **kw))

    async def create(self, advertiser: str = "adv-1", **overrides: Any) -> str:
        cid = str(uuid.uuid4())
        as_ = "advertiser" if advertiser == "adv-1" else "other"
        got = await self.do("campaign.create", cid, create_data(advertiser, **overrides), as_=as_)
        assert got.type == "campaign.status_changed", got.event
        return cid

    async def status(self, campaign_id: str) -> tuple[str, int]:
        [row] = await self.h.fetch(
            "SELECT status, version FROM campaigns WHERE id=$1", uuid.UUID(campaign_id)
        )
        return row["status"], row["version"]
