"""Creatives, holds and the serving verdict, catalog and duplication (issue 5) on real Kafka
and Postgres."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from campaign_worker.entrypoints.cli import main as cli_main
from tests.conftest import Harness
from tests.support.contract import PRODUCT, Driver, iso, product_event
from tests.support.kafka_io import cloudevent
from tests.support.util import eventually, seed_product

pytestmark = pytest.mark.e2e


def content(text: str = "50% off") -> dict[str, str]:
    return {
        "file_url": "https://cdn.example.com/b.png",
        "destination_url": "https://shop.example.com/sale",
        "text": text,
    }


@pytest.fixture
async def drv(harness: Harness) -> Driver:
    await harness.start_worker(scheduler_tick_s=0.2)
    await seed_product(harness)
    return Driver(harness)


async def live_campaign(drv: Driver) -> str:
    now = datetime.now(UTC)
    cid = await drv.create(
        start_at=iso(now - timedelta(minutes=1)), end_at=iso(now + timedelta(days=1))
    )
    await drv.do("campaign.submit", cid)
    await drv.do("review.campaign_approved", cid, as_="publisher")
    await drv.h.down.wait_for(
        lambda r: (
            r.event.get("subject") == cid
            and r.type == "campaign.status_changed"
            and r.data["to"] == "LIVE"
        )
    )
    return cid


async def approved_creative(
    drv: Driver, cid: str, creative_id: str, unit: str = "unit-728x90"
) -> None:
    got = await drv.do(
        "creative.create",
        cid,
        {"creative_id": creative_id, "name": creative_id, "ad_unit_id": unit, "content": content()},
    )
    assert got.type == "creative.status_changed" and got.data["to"] == "UNDER_REVIEW", got.data
    got = await drv.do(
        "review.creative_approved", cid, {"creative_id": creative_id}, as_="publisher"
    )
    assert got.type == "creative.status_changed" and got.data["to"] == "APPROVED", got.data


async def units_of_product(drv: Driver, units: list[str]) -> None:
    """The catalog changes the product's unit set; wait until the worker stored it."""
    await drv.h.up.send("campaign.catalog", product_event(unit_ids=units))

    async def stored() -> bool:
        rows = await drv.h.fetch("SELECT unit_ids::text FROM ad_products WHERE id=$1", PRODUCT)
        return bool(rows) and json.loads(rows[0]["unit_ids"]) == units

    await eventually(stored)


def serving(drv: Driver, cid: str) -> list[dict[str, Any]]:
    return [r.data for r in drv.h.down.of_type("campaign.serving_changed", cid)]


async def last_serving(drv: Driver, cid: str, count: int) -> dict[str, Any]:
    got = await drv.h.down.wait_for(
        lambda r: r.type == "campaign.serving_changed" and r.event.get("subject") == cid,
        count=count,
    )
    return got[-1].data


async def test_live_campaign_whose_only_approved_creative_pauses_stops_serving(
    drv: Driver, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = await live_campaign(drv)
    assert serving(drv, cid)[-1]["holds"] == ["no_approved_creatives"]
    await approved_creative(drv, cid, "c1")
    on = await last_serving(drv, cid, len(serving(drv, cid)))
    assert on["serving"] is True and on["holds"] == [] and on["display_status"] == "Running"
    n = len(serving(drv, cid))

    paused = await drv.do("creative.pause", cid, {"creative_id": "c1"})
    assert paused.data["to"] == "PAUSED"
    off = await last_serving(drv, cid, n + 1)
    assert off["serving"] is False
    assert off["holds"] == ["no_approved_creatives"]
    assert off["display_status"] == "Ad groups not running"
    assert off["reasons"]
    monkeypatch.setenv("DATABASE_URL", drv.h.database_url)
    assert await asyncio.to_thread(cli_main, ["campaign", "show", cid]) == 0
    shown = capsys.readouterr().out
    assert "Serving: no (Ad groups not running)" in shown
    assert all(f"  - {reason}" in shown for reason in off["reasons"])
    assert "c1" in shown and "PAUSED" in shown

    await drv.do("creative.resume", cid, {"creative_id": "c1"})
    again = await last_serving(drv, cid, n + 2)
    assert again["serving"] is True and again["holds"] == []


async def test_content_edit_stops_that_creative_until_reapproved_others_keep_serving(
    drv: Driver,
) -> None:
    cid = await live_campaign(drv)
    await approved_creative(drv, cid, "c1")
    await approved_creative(drv, cid, "c2")
    n = len(serving(drv, cid))
    assert serving(drv, cid)[-1]["serving"] is True

    edit = await drv.send(
        "creative.update", cid, {"creative_id": "c1", "content": {"text": "new copy"}}
    )
    answers = await drv.h.down.wait_for(
        lambda r: r.event.get("causationid") == edit["id"] and r.type.startswith("creative."),
        count=2,
    )
    assert {a.type for a in answers} == {"creative.updated", "creative.status_changed"}
    [back] = [a for a in answers if a.type == "creative.status_changed"]
    assert (back.data["from"], back.data["to"]) == ("APPROVED", "UNDER_REVIEW")
    rename = await drv.do("creative.update", cid, {"creative_id": "c2", "name": "renamed"})
    assert rename.type == "creative.updated" and rename.data["status"] == "APPROVED"
    assert len(serving(drv, cid)) == n  # c2 still serves: no verdict change
    rows = await drv.h.fetch(
        "SELECT id, status FROM creatives WHERE campaign_id=$1 ORDER BY id", uuid.UUID(cid)
    )
    assert [(r["id"], r["status"]) for r in rows] == [("c1", "UNDER_REVIEW"), ("c2", "APPROVED")]


async def test_suspension_and_landing_page_holds_stop_serving_with_all_reasons(
    drv: Driver,
) -> None:
    cid = await live_campaign(drv)
    await approved_creative(drv, cid, "c1")
    n = len(serving(drv, cid))
    await drv.send("review.campaign_suspended", cid, {"reason": "policy"}, as_="publisher")
    off = await last_serving(drv, cid, n + 1)
    assert (off["serving"], off["holds"], off["display_status"]) == (
        False,
        ["suspended"],
        "Suspended",
    )
    await drv.send("review.landing_page_status", cid, {"available": False}, as_="publisher")
    both = await last_serving(drv, cid, n + 2)
    assert both["holds"] == ["suspended", "landing_page_unavailable"]
    await drv.send("review.campaign_reinstated", cid, as_="publisher")
    page = await last_serving(drv, cid, n + 3)
    assert page["holds"] == ["landing_page_unavailable"]
    assert page["display_status"] == "Landing page not available"
    await drv.send("review.landing_page_status", cid, {"available": True}, as_="publisher")
    assert (await last_serving(drv, cid, n + 4))["serving"] is True
    assert_refused = await drv.do("review.campaign_suspended", cid, {"reason": "x"})
    assert assert_refused.data["code"] == "forbidden"


async def test_catalog_marking_the_product_unbuyable_holds_its_live_campaigns(
    drv: Driver,
) -> None:
    cid = await live_campaign(drv)
    await approved_creative(drv, cid, "c1")
    n = len(serving(drv, cid))
    await drv.h.up.send(
        "campaign.catalog",
        cloudevent(
            "catalog.ad_product_upserted",
            "prod-banner",
            {
                "ad_product_id": "prod-banner",
                "name": "Homepage banner",
                "unit_ids": ["unit-728x90"],
                "unit_set_valid": True,
                "buyable": False,
            },
            actorrole="publisher",
            actorid="pub-1",
        ),
    )
    off = await last_serving(drv, cid, n + 1)
    assert off["holds"] == ["product_not_buyable"] and off["display_status"] == "ASIN not buyable"


async def test_duplicate_copies_only_the_approved_compatible_creative_as_under_review(
    drv: Driver,
) -> None:
    # the product had a second unit when the creatives were registered (a creative must use a
    # unit of its product); the catalog drops that unit before the duplication
    await units_of_product(drv, ["unit-728x90", "unit-300x250"])
    cid = await drv.create(targeting={"categories": ["cat-ok", "cat-gone"], "groups": []})
    await drv.h.up.send(
        "campaign.catalog",
        cloudevent(
            "catalog.category_deleted",
            "cat-gone",
            {"category_id": "cat-gone"},
            actorrole="publisher",
            actorid="pub-1",
        ),
    )
    for creative_id, unit in (
        ("rej", "unit-728x90"),
        ("del", "unit-728x90"),
        ("wide", "unit-300x250"),
        ("ok", "unit-728x90"),
    ):
        await drv.do(
            "creative.create",
            cid,
            {
                "creative_id": creative_id,
                "name": creative_id,
                "ad_unit_id": unit,
                "content": content(),
            },
        )
    await drv.do(
        "review.creative_rejected", cid, {"creative_id": "rej", "reason": "blurry"}, as_="publisher"
    )
    await drv.do("review.creative_approved", cid, {"creative_id": "ok"}, as_="publisher")
    await drv.do("review.creative_approved", cid, {"creative_id": "wide"}, as_="publisher")
    deleted = await drv.do("creative.delete", cid, {"creative_id": "del"})
    assert deleted.type == "creative.deleted"

    async def category_stored() -> bool:
        return bool(await drv.h.fetch("SELECT 1 FROM catalog_categories WHERE id='cat-gone'"))

    await eventually(category_stored)
    await units_of_product(drv, ["unit-728x90"])
    new_id = str(uuid.uuid4())
    dup = await drv.send("campaign.duplicate", cid, {"new_campaign_id": new_id})
    [result] = await drv.h.down.wait_for(
        lambda r: r.type == "campaign.duplicated" and r.event.get("causationid") == dup["id"]
    )
    data = result.data
    assert data["source_campaign_id"] == cid and data["campaign_id"] == new_id
    assert {e["creative_id"]: e["why"] for e in data["excluded_creatives"]} == {
        "rej": "rejected",
        "del": "deleted",
        "wide": "unit_not_in_product",
    }
    assert data["targeting_reset"] is True
    assert {"budget", "start_at", "end_at", "title", "status"} <= set(data["reset"])
    [row] = await drv.h.fetch(
        "SELECT status, title, budget_amount, targeting, start_at, end_at"
        " FROM campaigns WHERE id=$1",
        uuid.UUID(new_id),
    )
    assert row["status"] == "DRAFT" and row["budget_amount"] == 0
    assert row["title"].startswith("Winter sale ")
    assert row["start_at"] > datetime.now(UTC) + timedelta(days=6)
    copies = await drv.h.fetch(
        "SELECT id, status, ad_unit_id FROM creatives WHERE campaign_id=$1", uuid.UUID(new_id)
    )
    assert [(c["status"], c["ad_unit_id"]) for c in copies] == [("UNDER_REVIEW", "unit-728x90")]


async def test_duplication_is_refused_when_the_product_was_deleted(drv: Driver) -> None:
    await seed_product(drv.h, "prod-old")
    cid = await drv.create(ad_product_id="prod-old")
    await drv.h.up.send(
        "campaign.catalog",
        cloudevent(
            "catalog.ad_product_deleted",
            "prod-old",
            {"ad_product_id": "prod-old"},
            actorrole="publisher",
            actorid="pub-1",
        ),
    )

    async def deleted() -> bool:
        return bool(await drv.h.fetch("SELECT 1 FROM ad_products WHERE id='prod-old' AND deleted"))

    await eventually(deleted)
    got = await drv.do("campaign.duplicate", cid, {"new_campaign_id": str(uuid.uuid4())})
    assert got.type == "command.rejected" and got.data["code"] == "duplicate_not_allowed"
