"""Rules of the second pass that live in the service (the message path over a fake unit of
work): initial holds on every path into existence, every creative announced, and nothing
revives a campaign whose end has passed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from campaign_worker.domain.model import Status
from campaign_worker.domain.serving import Hold
from campaign_worker.service.processor import Processor, RetryPolicy
from tests.unit.fakes import FakeUnitOfWork, Store
from tests.unit.test_processor import PRODUCT, create, ev, record

BEFORE = datetime(2029, 12, 1, tzinfo=UTC)
AFTER_END = datetime(2030, 2, 1, 0, 0, 5, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = BEFORE


def processor(store: Store, clock: Clock) -> Processor:
    return Processor(
        lambda: FakeUnitOfWork(store),
        physical_topic=lambda t: t,
        is_transient=lambda e: False,
        retry=RetryPolicy(max_attempts=1),
        clock=lambda: clock.now,
    )


class World:
    def __init__(self) -> None:
        self.store = Store()
        self.clock = Clock()
        self.offset = 0

    async def send(self, event: dict[str, Any], topic: str = "campaign.commands") -> None:
        self.offset += 1
        await processor(self.store, self.clock).process([record(event, topic, self.offset)])

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(m.value) for m in self.store.outbox]
        return [e for e in out if type_ is None or e["type"] == type_]

    async def booked(self) -> str:
        await self.send(PRODUCT, "campaign.catalog")
        cid = str(uuid.uuid4())
        await self.send(create(cid))
        await self.send(ev("campaign.submit", cid))
        await self.send(
            ev("review.campaign_approved", cid, actorrole="publisher"), "campaign.reviews"
        )
        return cid


def unbuyable() -> dict[str, Any]:
    data = {**PRODUCT["data"], "buyable": False}
    return {**PRODUCT, "id": str(uuid.uuid4()), "data": data}


async def test_a_duplicate_of_a_campaign_whose_product_is_not_buyable_starts_with_the_hold() -> (
    None
):
    w = World()
    cid = await w.booked()
    await w.send(unbuyable(), "campaign.catalog")
    assert w.store.holds[uuid.UUID(cid)][0] == frozenset({Hold.PRODUCT_NOT_BUYABLE})
    copy = str(uuid.uuid4())
    await w.send(ev("campaign.duplicate", cid, {"new_campaign_id": copy}))
    assert w.store.holds[uuid.UUID(copy)][0] == frozenset({Hold.PRODUCT_NOT_BUYABLE})
    [serving] = [e for e in w.events("campaign.serving_changed") if e["subject"] == copy]
    assert "product_not_buyable" in serving["data"]["holds"]


async def test_every_duplicated_creative_is_announced_as_under_review() -> None:
    w = World()
    cid = await w.booked()
    content = {
        "file_url": "https://a.example/x.png",
        "destination_url": "https://a.example",
        "text": "t",
    }
    creative = {"creative_id": "cr-1", "name": "n", "ad_unit_id": "u", "content": content}
    await w.send(ev("creative.create", cid, creative))
    copy = str(uuid.uuid4())
    await w.send(ev("campaign.duplicate", cid, {"new_campaign_id": copy}))
    [dup] = w.events("campaign.duplicated")
    [(source_id, copy_id)] = [
        (c["source_creative_id"], c["creative_id"]) for c in dup["data"]["creatives"]
    ]
    announced = [e for e in w.events("creative.status_changed") if e["subject"] == copy]
    assert [
        (e["data"]["creative_id"], e["data"]["from"], e["data"]["to"], e["data"]["reason"])
        for e in announced
    ] == [(copy_id, None, "UNDER_REVIEW", "duplicated")]
    assert source_id == "cr-1"


async def test_a_command_arriving_after_the_end_sees_the_campaign_ended() -> None:
    for command in (
        ev("campaign.resume", "X"),
        ev("campaign.extend_end", "X", {"end_at": "2030-03-01T00:00:00Z"}),
        ev("campaign.update", "X", {"title": "still here?"}, actorrole="publisher"),
    ):
        w = World()
        cid = await w.booked()
        await w.send(ev("campaign.pause", cid))
        w.clock.now = AFTER_END  # the scheduler has not run: the end is due but not applied
        await w.send({**command, "subject": cid})
        assert w.store.campaigns[uuid.UUID(cid)].status is Status.CLOSED
        closed = [e for e in w.events("campaign.status_changed") if e["data"]["to"] == "CLOSED"]
        assert [e["data"]["trigger"] for e in closed] == ["end"]
        [rejected] = w.events("command.rejected")
        assert rejected["data"]["command_id"] == command["id"]
        assert rejected["data"]["code"] in ("invalid_transition", "not_editable")
        # the end came first, in the same transaction as the refusal
        ids = [e["id"] for e in w.events()]
        assert ids.index(closed[0]["id"]) < ids.index(rejected["id"])
