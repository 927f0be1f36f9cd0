"""Campaign lifecycle end to end (spec §1, §2, §8) on real Kafka and Postgres: every
transition, each refusal family, authorization, and a burst that must match the domain."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.errors import Refusal
from campaign_worker.domain.lifecycle import decide, evolve
from campaign_worker.domain.model import Actor, AdProduct, BillingType, Contact, Role, Targeting
from campaign_worker.domain.money import Money
from campaign_worker.entrypoints.cli import main as cli_main
from tests.conftest import Harness
from tests.support.contract import PRODUCT, Driver, create_data, iso
from tests.support.util import eventually, seed_product

pytestmark = pytest.mark.e2e


@pytest.fixture
async def drv(harness: Harness) -> Driver:
    # the scheduler is off: these tests send schedule.* messages through Kafka themselves
    await harness.start_worker(scheduler_enabled=False)
    await seed_product(harness)
    return Driver(harness)


def assert_status_event(got: Any, frm: str | None, to: str, display: str) -> None:
    assert got.type == "campaign.status_changed", got.event
    assert (got.data["from"], got.data["to"], got.data["display_status"]) == (frm, to, display)


def assert_rejected(got: Any, code: str) -> None:
    assert got.type == "command.rejected", got.event
    assert got.data["code"] == code, got.data
    assert got.data["message"]


async def test_t1_t2_t8_t9_t11_submit_approve_pause_resume_publisher_cancel_with_penalty(
    drv: Driver,
) -> None:
    cid = await drv.create()
    assert_status_event(
        await drv.do("campaign.submit", cid, correlationid="req-1"), "DRAFT", "SUBMITTED", "Pending"
    )
    assert_status_event(
        await drv.do("review.campaign_approved", cid, as_="publisher"),
        "SUBMITTED",
        "BOOKED",
        "Ready",
    )
    assert_status_event(await drv.do("campaign.pause", cid), "BOOKED", "PAUSED", "Paused")
    assert_status_event(
        await drv.do("campaign.resume", cid, as_="publisher"), "PAUSED", "BOOKED", "Ready"
    )
    got = await drv.do(
        "campaign.cancel",
        cid,
        {"reason": "policy", "penalty": {"amount": "50.00", "currency": "EUR"}},
        as_="publisher",
    )
    assert_status_event(got, "BOOKED", "CANCELLED", "Terminated")
    assert got.data["penalty"] == {"amount": "50.00", "currency": "EUR"}
    assert got.data["actor"] == {"role": "publisher", "id": "pub-1"}
    assert await drv.status(cid) == ("CANCELLED", 6)
    history = await drv.h.fetch(
        "SELECT version, kind, from_status, to_status, actor_role, message_type"
        " FROM campaign_history WHERE campaign_id=$1 ORDER BY version",
        uuid.UUID(cid),
    )
    assert [(h["version"], h["to_status"]) for h in history] == [
        (1, "DRAFT"),
        (2, "SUBMITTED"),
        (3, "BOOKED"),
        (4, "PAUSED"),
        (5, "BOOKED"),
        (6, "CANCELLED"),
    ]
    assert history[2]["actor_role"] == "publisher"
    assert history[2]["message_type"] == "review.campaign_approved"


async def test_t3_t4_rejected_campaign_is_edited_and_resubmitted(drv: Driver) -> None:
    cid = await drv.create()
    await drv.do("campaign.submit", cid)
    got = await drv.do(
        "review.campaign_rejected", cid, {"reason": "misleading claims"}, as_="publisher"
    )
    assert_status_event(got, "SUBMITTED", "REJECTED", "Rejected")
    assert got.data["reason"] == "misleading claims"
    upd = await drv.do("campaign.update", cid, {"title": "Honest winter sale"})
    assert upd.type == "campaign.updated" and upd.data["changed"] == ["title"]
    assert_status_event(await drv.do("campaign.submit", cid), "REJECTED", "SUBMITTED", "Pending")


async def test_t10_advertiser_cancels_draft(drv: Driver) -> None:
    cid = await drv.create()
    assert_status_event(await drv.do("campaign.cancel", cid), "DRAFT", "CANCELLED", "Terminated")
    assert_rejected(await drv.do("campaign.submit", cid), "invalid_transition")


async def test_t5_t6_start_and_end_messages_move_a_booked_campaign_live_then_closed(
    drv: Driver,
) -> None:
    now = datetime.now(UTC)
    cid = await drv.create(
        start_at=iso(now - timedelta(minutes=1)), end_at=iso(now + timedelta(seconds=3))
    )
    await drv.do("campaign.submit", cid)
    await drv.do("review.campaign_approved", cid, as_="publisher")
    got = await drv.do("schedule.start_due", cid, {"due_at": iso(now)}, as_="system")
    # no approved creative yet: LIVE, but not serving (spec §4 display status)
    assert_status_event(got, "BOOKED", "LIVE", "Ad groups not running")
    early = await drv.do("schedule.end_due", cid, {"due_at": iso(now)}, as_="system")
    if datetime.now(UTC) < now + timedelta(seconds=3):
        assert_rejected(early, "invalid_transition")
    await asyncio.sleep(
        max(0.0, (now + timedelta(seconds=3.2) - datetime.now(UTC)).total_seconds())
    )
    got = await drv.do("schedule.end_due", cid, {"due_at": iso(now)}, as_="system")
    assert_status_event(got, "LIVE", "CLOSED", "Ended")


async def test_t7_booked_campaign_whose_end_passed_closes_directly(drv: Driver) -> None:
    now = datetime.now(UTC)
    cid = await drv.create(
        start_at=iso(now - timedelta(hours=2)), end_at=iso(now + timedelta(seconds=1))
    )
    await drv.do("campaign.submit", cid)
    await drv.do("review.campaign_approved", cid, as_="publisher")
    await asyncio.sleep(1.2)
    got = await drv.do("schedule.start_due", cid, {"due_at": iso(now)}, as_="system")
    assert_status_event(got, "BOOKED", "CLOSED", "Ended")


async def test_advertiser_cannot_cancel_booked_campaign(drv: Driver) -> None:
    cid = await drv.create()
    await drv.do("campaign.submit", cid)
    await drv.do("review.campaign_approved", cid, as_="publisher")
    assert_rejected(await drv.do("campaign.cancel", cid), "contact_publisher")
    assert await drv.status(cid) == ("BOOKED", 3)


async def test_advertiser_acting_on_another_advertisers_campaign_is_forbidden(
    drv: Driver,
) -> None:
    cid = await drv.create()
    for type_ in ("campaign.submit", "campaign.cancel", "campaign.pause"):
        assert_rejected(await drv.do(type_, cid, as_="other"), "forbidden")
    assert_rejected(
        await drv.do("campaign.update", cid, {"title": "mine now"}, as_="other"), "forbidden"
    )
    assert await drv.status(cid) == ("DRAFT", 1)


async def test_review_decisions_only_come_from_the_publisher(drv: Driver) -> None:
    cid = await drv.create()
    await drv.do("campaign.submit", cid)
    assert_rejected(await drv.do("review.campaign_approved", cid), "forbidden")
    assert_rejected(
        await drv.do(
            "schedule.start_due", cid, {"due_at": iso(datetime.now(UTC))}, as_="publisher"
        ),
        "forbidden",
    )
    assert await drv.status(cid) == ("SUBMITTED", 2)


async def test_editing_refusals_not_editable_and_locked_after_approval(drv: Driver) -> None:
    cid = await drv.create()
    await drv.do("campaign.submit", cid)
    assert_rejected(await drv.do("campaign.update", cid, {"title": "x"}), "not_editable")
    await drv.do("review.campaign_approved", cid, as_="publisher")
    assert_rejected(
        await drv.do(
            "campaign.update",
            cid,
            {"budget": {"amount": "5.00", "currency": "EUR"}},
            as_="publisher",
        ),
        "locked_after_approval",
    )
    ok = await drv.do("campaign.update", cid, {"title": "Renamed by publisher"}, as_="publisher")
    assert ok.type == "campaign.updated" and ok.data["version"] == 4
    await drv.do("campaign.pause", cid)
    [row] = await drv.h.fetch("SELECT end_at FROM campaigns WHERE id=$1", uuid.UUID(cid))
    later = iso(row["end_at"] + timedelta(days=1))
    ext = await drv.do("campaign.extend_end", cid, {"end_at": later})
    assert ext.type == "campaign.updated" and ext.data["changed"] == ["end_at"]
    assert_rejected(await drv.do("campaign.update", cid, {"title": "no"}), "not_editable")


async def test_validation_refusals_not_found_already_exists_and_bad_fields(drv: Driver) -> None:
    assert_rejected(await drv.do("campaign.submit", str(uuid.uuid4())), "not_found")
    cid = await drv.create()
    assert_rejected(await drv.do("campaign.create", cid, create_data()), "already_exists")
    now = datetime.now(UTC)
    bad = {
        "end before start": {
            "start_at": iso(now + timedelta(days=2)),
            "end_at": iso(now + timedelta(days=1)),
        },
        "negative money": {"budget": {"amount": "-1.00", "currency": "EUR"}},
        "unknown currency": {"budget": {"amount": "1.00", "currency": "XYZ"}},
        "too many decimals": {"budget": {"amount": "1.001", "currency": "EUR"}},
        "unknown product": {"ad_product_id": "prod-nope"},
        "bad timezone": {"timezone": "Mars/Olympus"},
    }
    for why, overrides in bad.items():
        got = await drv.do("campaign.create", str(uuid.uuid4()), create_data(**overrides))
        assert got.type == "command.rejected", why
        assert got.data["code"] == "validation_failed", (why, got.data)


async def test_deleted_product_blocks_submit(drv: Driver) -> None:
    await seed_product(drv.h, "prod-gone")
    cid = await drv.create(ad_product_id="prod-gone")
    await drv.h.up.send("campaign.catalog", {**(await _catalog_delete("prod-gone"))})

    async def deleted() -> bool:
        return bool(await drv.h.fetch("SELECT 1 FROM ad_products WHERE id='prod-gone' AND deleted"))

    await eventually(deleted)
    assert_rejected(await drv.do("campaign.submit", cid), "validation_failed")


async def _catalog_delete(product_id: str) -> dict[str, Any]:
    from tests.support.kafka_io import cloudevent

    return cloudevent(
        "catalog.ad_product_deleted",
        product_id,
        {"ad_product_id": product_id},
        actorrole="publisher",
        actorid="pub-1",
    )


async def test_campaign_show_cli_prints_state_and_history(
    drv: Driver, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = await drv.create()
    sub = await drv.send("campaign.submit", cid)
    await drv.answer(sub)
    monkeypatch.setenv("DATABASE_URL", drv.h.database_url)
    assert await asyncio.to_thread(cli_main, ["campaign", "show", cid]) == 0
    out = capsys.readouterr().out
    assert "SUBMITTED" in out and "Pending" in out
    assert "DRAFT -> SUBMITTED (submit)" in out and sub["id"] in out and "advertiser:adv-1" in out
    assert await asyncio.to_thread(cli_main, ["campaign", "show", cid, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [h["to_status"] for h in report["history"]] == ["DRAFT", "SUBMITTED"]
    assert await asyncio.to_thread(cli_main, ["campaign", "show", str(uuid.uuid4())]) == 1


# ------------------------------------------------------------------ burst


# Kafka keeps order per key within a topic, not across topics: review decisions travel on
# campaign.reviews, so the burst comes in phases, each a random interleaving of campaigns.
PHASES: list[list[tuple[str, str, dict[str, Any] | None]]] = [
    [
        ("campaign.submit", "advertiser", None),
        ("campaign.update", "advertiser", {"title": "retitled"}),
        ("campaign.cancel", "advertiser", None),
        ("campaign.submit", "other", None),
        ("campaign.update", "publisher", {"title": "publisher title"}),
    ],
    [
        ("review.campaign_approved", "publisher", None),
        ("review.campaign_rejected", "publisher", {"reason": "no"}),
    ],
    [
        ("campaign.pause", "advertiser", None),
        ("campaign.resume", "publisher", None),
        ("campaign.cancel", "advertiser", None),
        ("campaign.cancel", "publisher", None),
        ("campaign.update", "publisher", {"title": "publisher title"}),
        ("campaign.submit", "advertiser", None),
    ],
]
MOVES_PER_PHASE = (3, 1, 5)  # + 1 create = 10 commands per campaign


def _domain_command(type_: str, cid: uuid.UUID, data: dict[str, Any] | None) -> Any:
    return {
        "campaign.submit": lambda: cmd.SubmitCampaign(campaign_id=cid),
        "review.campaign_approved": lambda: cmd.ApproveCampaign(campaign_id=cid),
        "review.campaign_rejected": lambda: cmd.RejectCampaign(campaign_id=cid, reason="no"),
        "campaign.pause": lambda: cmd.PauseCampaign(campaign_id=cid),
        "campaign.resume": lambda: cmd.ResumeCampaign(campaign_id=cid),
        "campaign.cancel": lambda: cmd.CancelCampaign(campaign_id=cid),
        "campaign.update": lambda: cmd.UpdateCampaign(
            campaign_id=cid, changes={"title": (data or {})["title"]}
        ),
    }[type_]()


async def test_burst_of_1000_commands_for_100_campaigns_matches_applying_them_one_by_one(
    drv: Driver,
) -> None:
    rng = random.Random(20261127)
    now = datetime.now(UTC)
    start, end = now + timedelta(days=30), now + timedelta(days=60)
    campaigns = [str(uuid.uuid4()) for _ in range(100)]
    subjects = set(campaigns)
    plan: dict[str, list[tuple[str, str, dict[str, Any] | None]]] = {c: [] for c in campaigns}
    sent = 0
    phases = [
        [("campaign.create", "advertiser", create_data(start_at=iso(start), end_at=iso(end)))]
    ]
    phases += [list(p) for p in PHASES]
    for index, moves in enumerate(phases):
        per = 1 if index == 0 else MOVES_PER_PHASE[index - 1]
        todo = {c: [rng.choice(moves) for _ in range(per)] for c in campaigns}
        futures = []
        while any(todo.values()):  # a random interleaving; each campaign keeps its own order
            cid = rng.choice([c for c in campaigns if todo[c]])
            move = todo[cid].pop(0)
            if index:
                plan[cid].append(move)
            topic, event = drv.build(move[0], cid, move[2], as_=move[1])
            futures.append(await drv.h.up.send_nowait(topic, event))
        await asyncio.gather(*futures)
        sent += len(futures)
        await drv.h.down.wait_for(
            lambda r: (
                r.topic == "campaign.events"
                and r.event.get("subject") in subjects
                and r.type != "campaign.serving_changed"
            ),
            count=sent,
            timeout=120,
        )
    assert sent == 1000

    # the same sequences, applied one by one by the pure domain
    product = {
        PRODUCT: AdProduct(
            id=PRODUCT,
            name="p",
            unit_ids=("unit-728x90",),
            unit_set_valid=True,
            buyable=True,
            deleted=False,
        )
    }
    roles = {
        "advertiser": Actor(Role.ADVERTISER, "adv-1"),
        "other": Actor(Role.ADVERTISER, "adv-2"),
        "publisher": Actor(Role.PUBLISHER, "pub-1"),
    }
    expected: dict[str, tuple[str, int]] = {}
    for cid in campaigns:
        u = uuid.UUID(cid)
        [created] = decide(
            None,
            cmd.CreateCampaign(
                campaign_id=u,
                advertiser_id="adv-1",
                title="Winter sale",
                ad_product_id=PRODUCT,
                budget=Money.of("1000.00", "EUR"),
                billing_type=BillingType.MANUAL,
                start_at=start.replace(microsecond=start.microsecond),
                end_at=end,
                targeting=Targeting(),
                frequency_cap=None,
                contact=Contact("Ada", "ada@example.com"),
                timezone=None,
            ),
            roles["advertiser"],
            now,
            product,
        )
        state = evolve(None, created)
        for type_, who, data in plan[cid]:
            try:
                for e in decide(state, _domain_command(type_, u, data), roles[who], now, product):
                    state = evolve(state, e)
            except Refusal:
                pass
        expected[cid] = (state.status.value, state.version)

    rows = await drv.h.fetch(
        "SELECT id, status, version FROM campaigns WHERE id = ANY($1)",
        [uuid.UUID(c) for c in campaigns],
    )
    actual = {str(r["id"]): (r["status"], r["version"]) for r in rows}
    assert actual == expected
    events = drv.h.down.matching(
        lambda r: (
            r.topic == "campaign.events"
            and r.event.get("subject") in subjects
            and r.type != "campaign.serving_changed"
        )
    )
    assert len(events) == 1000  # one answer per command: a status/update event or a refusal
    assert len({s for s, _ in expected.values()}) >= 4  # the walk really went places
