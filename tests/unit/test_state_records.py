"""`campaign.state`: one record per changed campaign per batch, written with the change, whose
version only grows and whose content is the campaign's whole stored state (processor, real
handlers and translation, fake unit of work)."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from campaign_worker.entrypoints.cli import message_example
from campaign_worker.service.batch import Batch, State
from campaign_worker.service.processor import Processor, RetryPolicy
from tests.support.kafka_io import cloudevent
from tests.support.schemas import validate_outgoing
from tests.unit.fakes import FakeUnitOfWork, Store, translated

START = datetime(2030, 1, 1, tzinfo=UTC)
END = datetime(2030, 2, 1, tzinfo=UTC)
SENDERS = {  # type prefix -> (role, actor id)
    "campaign": ("advertiser", "adv-1"),
    "creative": ("advertiser", "adv-1"),
    "review": ("publisher", "pub-1"),
    "payment": ("system", "payments"),
    "delivery": ("system", "ad-server"),
    "catalog": ("publisher", "pub-1"),
}


class World:
    def __init__(self, *, publish_state: bool = True) -> None:
        self.store = Store()
        self.now = START - timedelta(days=10)
        self.offset = 0
        self.processor = Processor(
            lambda: FakeUnitOfWork(self.store),
            physical_topic=lambda t: t,
            is_transient=lambda e: False,
            retry=RetryPolicy(max_attempts=1),
            clock=lambda: self.now,
            publish_state=publish_state,
        )

    def item(self, type_: str, subject: str, data: dict[str, Any] | None = None) -> Any:
        role, actor = SENDERS[type_.split(".")[0]]
        self.offset += 1
        data = data if data is not None else message_example(type_)
        return translated(
            cloudevent(type_, subject, data, actorrole=role, actorid=actor), self.offset
        )

    async def send(self, type_: str, subject: str, data: dict[str, Any] | None = None) -> None:
        await self.processor.process([self.item(type_, subject, data)])

    async def product(self) -> None:
        await self.send(
            "catalog.ad_product_upserted",
            "p",
            {
                "ad_product_id": "p",
                "name": "P",
                "unit_ids": ["u"],
                "unit_set_valid": True,
                "buyable": True,
            },
        )

    async def create(self, billing: str = "manual") -> str:
        cid = str(uuid.uuid4())
        await self.send(
            "campaign.create",
            cid,
            {
                "advertiser_id": "adv-1",
                "title": "Winter sale",
                "ad_product_id": "p",
                "budget": {"amount": "1000.00", "currency": "EUR"},
                "billing_type": billing,
                "start_at": START.isoformat(),
                "end_at": END.isoformat(),
                "contact": {"name": "Ada", "email": "ada@example.com"},
            },
        )
        return cid

    def states(self, cid: str | None = None) -> list[dict[str, Any]]:
        """The campaign.state records in outbox order (envelopes)."""
        bodies = [json.loads(m.value) for m in self.store.outbox if m.topic == "campaign.state"]
        return [b for b in bodies if cid is None or b["subject"] == cid]

    async def stored_state(self, cid: str, updated_at: datetime) -> dict[str, Any]:
        """The state as computed afresh from what the store holds."""
        async with FakeUnitOfWork(self.store) as uow:
            campaigns = await uow.lock_campaigns([uuid.UUID(cid)])
            extras = await uow.load_extras(campaigns)
        state = State.loaded(campaigns, extras)
        return Batch(updated_at, state).state_of(campaigns[uuid.UUID(cid)], updated_at).data()


def delivery(spend: str, start: datetime, hours: int = 1) -> dict[str, Any]:
    return {
        "period_start": start.isoformat(),
        "period_end": (start + timedelta(hours=hours)).isoformat(),
        "impressions": 1000,
        "clicks": 10,
        "spend": {"amount": spend, "currency": "EUR"},
    }


async def test_each_changed_campaign_gets_one_state_record_per_batch_at_its_final_version() -> None:
    w = World()
    await w.product()
    created = await w.create()
    await w.processor.process(
        [
            w.item("campaign.update", created, {"title": "New title"}),
            w.item("campaign.submit", created),
        ]
    )
    (first, second) = w.states(created)
    assert first["data"]["status"] == "DRAFT" and first["data"]["version"] == 1
    campaign = w.store.campaigns[uuid.UUID(created)]
    assert second["data"]["version"] == campaign.version > 1
    assert second["data"]["status"] == "SUBMITTED"
    assert second["data"]["updated_at"] == w.now.isoformat().replace("+00:00", "Z")
    assert second["causationid"] is not None  # the submit, the message that changed it last
    for record in w.states():
        validate_outgoing(record)
    message = next(m for m in w.store.outbox if m.topic == "campaign.state")
    assert message.key == created.encode()  # keyed by campaign id: compaction keeps the latest


async def test_a_refused_command_writes_no_state_record() -> None:
    w = World()
    await w.product()
    cid = await w.create()
    before = len(w.states(cid))
    await w.send("campaign.resume", cid)  # a draft cannot be resumed
    assert len(w.states(cid)) == before
    assert any(json.loads(m.value)["type"] == "command.rejected" for m in w.store.outbox)


async def test_spend_is_part_of_the_state_so_a_delivery_report_is_a_new_version() -> None:
    w = World()
    await w.product()
    cid = await w.create()
    await w.send("campaign.submit", cid)
    await w.send("review.campaign_approved", cid)
    w.now = START
    await w.processor.process_due(10)
    live = w.states(cid)[-1]["data"]
    assert live["status"] == "LIVE"
    await w.send("delivery.reported", cid, delivery("25.00", START))
    after = w.states(cid)[-1]["data"]
    assert after["version"] > live["version"]
    assert after["spent_total"] == {"amount": "25.00", "currency": "EUR"}
    assert w.store.campaigns[uuid.UUID(cid)].version == after["version"]


async def test_with_the_state_topic_off_no_record_is_written_and_versions_still_grow() -> None:
    on, off = World(), World(publish_state=False)
    for w in (on, off):
        await w.product()
        cid = await w.create()
        await w.send("campaign.submit", cid)
        await w.send("review.campaign_approved", cid)
        w.now = START
        await w.processor.process_due(10)
        await w.send("delivery.reported", cid, delivery("25.00", START))
    assert on.states() and not off.states()
    assert [c.version for c in on.store.campaigns.values()] == [
        c.version for c in off.store.campaigns.values()
    ]


# The random walk: commands of every kind that change a campaign or its parts, in any order
# (most are refused in most states: refusals must write no state record).
STEPS: list[tuple[str, Any]] = [
    ("campaign.submit", None),
    ("campaign.update", {"title": "Another title"}),
    ("review.campaign_approved", None),
    ("review.campaign_rejected", {"reason": "Not allowed"}),
    ("campaign.pause", None),
    ("campaign.resume", None),
    ("campaign.cancel", None),
    ("creative.create", "creative"),
    ("review.creative_approved", "known creative"),
    ("review.creative_rejected", "rejected creative"),
    ("creative.pause", "known creative"),
    ("creative.resume", "known creative"),
    ("creative.delete", "known creative"),
    ("review.campaign_suspended", {"reason": "policy"}),
    ("review.campaign_reinstated", {}),
    ("review.landing_page_status", {"available": False}),
    ("review.landing_page_status", {"available": True}),
    ("payment.charge_succeeded", "charge"),
    ("delivery.reported", "delivery"),
    ("time", "start"),
]


async def test_random_lifecycles_keep_versions_growing_and_the_last_record_equal_to_the_store() -> (
    None
):
    rng = random.Random(20261202)
    w = World()
    await w.product()
    campaigns = [await w.create(rng.choice(["manual", "card"])) for _ in range(12)]
    creatives: dict[str, list[str]] = {c: [] for c in campaigns}
    for step in range(800):
        cid = rng.choice(campaigns)
        # the end instant passes for the last quarter of the walk (closes, settlements)
        type_, data = ("time", "end") if step == 600 else rng.choice(STEPS)
        if type_ == "time":
            w.now = START + timedelta(minutes=1) if data == "start" else END + timedelta(hours=2)
            await w.processor.process_due(100)
            await w.processor.process_due_settlements(100)
            continue
        if data == "creative":
            creative_id = f"cr-{step}"
            creatives[cid].append(creative_id)
            data = {**message_example("creative.create"), "creative_id": creative_id}
            data["ad_unit_id"] = "u"
        elif data in ("known creative", "rejected creative"):
            if not creatives[cid]:
                continue
            data = {"creative_id": rng.choice(creatives[cid])}
            if type_ == "review.creative_rejected":
                data["reason"] = "blurry"
        elif data == "charge":
            charges = w.store.accounts.get(uuid.UUID(cid))
            if charges is None or charges.current_charge is None:
                continue
            charge = charges.current_charge
            data = {"charge_id": charge.charge_id, "amount": charge.amount.to_wire()}
        elif data == "delivery":
            data = delivery(f"{rng.randint(0, 40)}.00", START + timedelta(hours=step))
        await w.send(type_, cid, data)

    checked = 0
    for cid in campaigns:
        records = w.states(cid)
        versions = [r["data"]["version"] for r in records]
        assert versions == sorted(set(versions)), f"versions of {cid} must only grow: {versions}"
        last = records[-1]["data"]
        assert last["version"] == w.store.campaigns[uuid.UUID(cid)].version
        updated_at = datetime.fromisoformat(last["updated_at"])
        assert last == await w.stored_state(cid, updated_at)
        checked += len(records)
    assert checked > 100  # the walk changed campaigns often enough to mean something
    seen = {r["data"]["status"] for r in w.states()}
    assert {"DRAFT", "SUBMITTED", "BOOKED", "LIVE", "CLOSED"} <= seen
    assert any(r["data"]["creatives"] for r in w.states())
    assert any(r["data"]["holds"] for r in w.states())
