"""The processor's failure modes, with a fake unit of work: duplicates, dead letters,
refusals, transient retries, poison isolation, shutdown."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from campaign_worker.entrypoints.translate import translate
from campaign_worker.service.inbound import Source
from campaign_worker.service.processor import Processor, RetryPolicy, Stopping
from tests.unit.fakes import FakeUnitOfWork, Store

NOW = datetime(2029, 12, 1, tzinfo=UTC)


class Transient(Exception):
    pass


def record(event: dict[str, Any] | bytes, topic: str = "campaign.commands", offset: int = 0) -> Any:
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    return translate(Source(topic, 0, offset, b"k", raw), max_bytes=100_000)


def ev(
    type_: str, subject: str, data: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    e = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/t",
        "type": type_,
        "subject": subject,
        "actorrole": "advertiser",
        "actorid": "adv-1",
        "data": data or {},
    }
    e.update(extra)
    return e


PRODUCT = ev(
    "catalog.ad_product_upserted",
    "p",
    {"ad_product_id": "p", "name": "P", "unit_ids": ["u"], "unit_set_valid": True, "buyable": True},
    actorrole="publisher",
)


def create(cid: str) -> dict[str, Any]:
    return ev(
        "campaign.create",
        cid,
        {
            "advertiser_id": "adv-1",
            "title": "T",
            "ad_product_id": "p",
            "budget": {"amount": "100.00", "currency": "EUR"},
            "billing_type": "manual",
            "start_at": "2030-01-01T00:00:00Z",
            "end_at": "2030-02-01T00:00:00Z",
            "contact": {"name": "A", "email": "a@example.com"},
        },
    )


def processor(store: Store, **kw: Any) -> Processor:
    return Processor(
        lambda: FakeUnitOfWork(store),
        physical_topic=lambda t: f"x.{t}",
        is_transient=lambda e: isinstance(e, Transient),
        retry=RetryPolicy(max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.002),
        clock=lambda: NOW,
        **kw,
    )


def types(store: Store) -> list[str]:
    """The outgoing types but the campaign.state records (their own tests below)."""
    return [t for m in store.outbox if (t := json.loads(m.value)["type"]) != "campaign.state"]


async def test_same_message_twice_is_processed_once() -> None:
    store = Store()
    cid = str(uuid.uuid4())
    c = create(cid)
    await processor(store).process(
        [record(PRODUCT, "campaign.catalog"), record(c), record(c, offset=1)]
    )
    await processor(store).process([record(c, offset=2)])
    assert types(store) == ["campaign.status_changed", "campaign.serving_changed"]
    assert store.campaigns[uuid.UUID(cid)].version == 1


async def test_refused_command_emits_command_rejected_with_causation() -> None:
    store = Store()
    cid = str(uuid.uuid4())
    submit = ev("campaign.submit", cid, correlationid="req-9")
    await processor(store).process([record(submit)])
    [msg] = store.outbox
    body = json.loads(msg.value)
    assert body["type"] == "command.rejected"
    assert body["data"]["code"] == "not_found"
    assert body["data"]["command_id"] == submit["id"]
    assert body["causationid"] == submit["id"] and body["correlationid"] == "req-9"
    assert msg.key == cid.encode()


async def test_undecodable_message_is_stored_and_published_to_the_dlq() -> None:
    store = Store()
    await processor(store).process([record(b"nope", offset=5)])
    [dead] = store.dead_letters.values()
    assert dead.code == "not_json" and dead.physical_topic == "x.campaign.commands"
    [msg] = store.outbox
    assert msg.topic == "campaign.dlq"
    assert json.loads(msg.value)["data"]["source"] == {
        "topic": "x.campaign.commands",
        "partition": 0,
        "offset": 5,
    }


async def test_transient_failures_are_retried_until_they_heal() -> None:
    store = Store(fail_next=[Transient("db down")] * 10)
    await processor(store).process_reliably([record(PRODUCT, "campaign.catalog")], asyncio.Event())
    assert "p" in store.products and store.commits == 1


async def test_a_poison_message_is_isolated_and_dead_lettered_as_processing_failed() -> None:
    store = Store(fail_next=[ValueError("bug")] * 3 + [ValueError("bug")] * 3)
    cid = str(uuid.uuid4())
    await processor(store).process_reliably([record(create(cid))], asyncio.Event())
    [dead] = store.dead_letters.values()
    assert dead.code == "processing_failed" and "bug" in dead.message
    assert types(store) == ["dlq.dead_lettered"]


async def test_shutdown_during_retries_commits_nothing() -> None:
    store = Store(fail_next=[Transient("db down")] * 1000)
    stopping = asyncio.Event()
    stopping.set()
    with pytest.raises(Stopping):
        await processor(store).process_reliably([record(PRODUCT, "campaign.catalog")], stopping)
    assert store.commits == 0


async def test_catalog_facts_in_the_same_batch_apply_before_commands() -> None:
    store = Store()
    cid = str(uuid.uuid4())
    await processor(store).process([record(create(cid)), record(PRODUCT, "campaign.catalog")])
    assert types(store) == ["campaign.status_changed", "campaign.serving_changed"]


async def test_logs_about_a_poison_message_carry_its_ids(caplog: pytest.LogCaptureFixture) -> None:
    from campaign_worker.logs import ContextFilter

    store = Store(fail_next=[ValueError("bug")] * 6)
    cid = str(uuid.uuid4())
    event = create(cid)
    event["correlationid"] = "req-7"
    handler_filter = ContextFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level("ERROR", logger="campaign_worker.service.processor"):
            await processor(store).process_reliably([record(event)], asyncio.Event())
    finally:
        caplog.handler.removeFilter(handler_filter)
    [dead] = [r for r in caplog.records if "dead-lettering" in r.getMessage()]
    assert dead.message_id == event["id"]  # type: ignore[attr-defined]
    assert dead.campaign_id == cid  # type: ignore[attr-defined]
    assert dead.correlation_id == "req-7"  # type: ignore[attr-defined]


async def test_catalog_upsert_locks_the_products_campaigns_only_when_buyability_changes() -> None:
    store = Store()
    await processor(store).process([record(PRODUCT, "campaign.catalog")])
    cid = str(uuid.uuid4())
    await processor(store).process([record(create(cid))])
    renamed = dict(PRODUCT, id=str(uuid.uuid4()), data=dict(PRODUCT["data"], name="New name"))
    await processor(store).process([record(renamed, "campaign.catalog", offset=1)])
    assert store.product_locks == []  # same buyability: its campaigns are not touched
    unbuyable = dict(PRODUCT, id=str(uuid.uuid4()), data=dict(PRODUCT["data"], buyable=False))
    await processor(store).process([record(unbuyable, "campaign.catalog", offset=2)])
    assert store.product_locks == ["p"]
    held, _ = store.holds[uuid.UUID(cid)]
    assert {h.value for h in held} == {"product_not_buyable"}


async def test_campaign_created_for_an_unbuyable_product_starts_with_the_hold() -> None:
    store = Store()
    unbuyable = dict(PRODUCT, data=dict(PRODUCT["data"], buyable=False))
    await processor(store).process([record(unbuyable, "campaign.catalog")])
    cid = str(uuid.uuid4())
    await processor(store).process([record(create(cid))])
    held, _ = store.holds[uuid.UUID(cid)]
    assert {h.value for h in held} == {"product_not_buyable"}
    serving = [
        json.loads(m.value)["data"]
        for m in store.outbox
        if json.loads(m.value)["type"] == "campaign.serving_changed"
    ]
    assert serving[-1]["holds"][0] == "product_not_buyable"


async def test_refusals_and_dead_letters_are_logged_with_their_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store()
    cid = str(uuid.uuid4())
    submit = ev("campaign.submit", cid, correlationid="req-3")
    with caplog.at_level("INFO", logger="campaign_worker.service"):
        await processor(store).process([record(submit), record(b"nope", offset=9)])
    [refused] = [r for r in caplog.records if r.getMessage().startswith("refused")]
    assert (refused.message_id, refused.campaign_id, refused.correlation_id) == (  # type: ignore[attr-defined]
        submit["id"],
        cid,
        "req-3",
    )
    [dead] = [r for r in caplog.records if r.getMessage().startswith("dead-lettered")]
    assert (dead.topic, dead.offset) == ("x.campaign.commands", 9)  # type: ignore[attr-defined]
