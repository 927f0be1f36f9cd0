"""Random command sequences with random actors and a moving clock.

Invariants checked after every step: terminal states stay terminal; version grows by exactly
1 per accepted command and not at all on a refusal; every accepted command yields exactly one
event (a creation, a status change or an update) whose status move is a row of TRANSITIONS
fired by a role that row allows; every refused one raises one Refusal with a known code and a
message; end_at > start_at always; paused_from is set exactly while PAUSED; instants stay UTC.

The same step generator runs twice: under hypothesis (random, shrinking), and as a seeded
random walk that also proves the sequences are not vacuous (every rule T1-T11 fires).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol, TypeVar
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_worker.domain.commands import (
    ApproveCampaign,
    CancelCampaign,
    Command,
    CreateCampaign,
    EndDue,
    ExtendEnd,
    PauseCampaign,
    RejectCampaign,
    ResumeCampaign,
    StartDue,
    SubmitCampaign,
    UpdateCampaign,
)
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.events import CampaignCreated, CampaignStatusChanged, CampaignUpdated
from campaign_worker.domain.lifecycle import TRANSITIONS, decide, evolve
from campaign_worker.domain.model import (
    TERMINAL,
    Actor,
    BillingType,
    Campaign,
    Contact,
    FrequencyCap,
    Role,
    Status,
    Targeting,
)
from campaign_worker.domain.money import Money
from tests.unit.domain_builders import (
    OTHER_ADVERTISER,
    OWNER,
    PRODUCTS,
    PUBLISHER,
    SYSTEM,
    create_command,
)

T = TypeVar("T")


class Pick(Protocol):
    """Chooses one of the options (the label names the draw for hypothesis)."""

    def __call__(self, options: Sequence[T], label: str) -> T: ...


CAMPAIGN_ID = UUID("6b1a0f8e-3c2d-4e5f-8a9b-0c1d2e3f4a5b")
T0 = datetime(2026, 11, 1, tzinfo=UTC)

ANY_ACTOR = [OWNER, PUBLISHER, SYSTEM, OTHER_ADVERTISER, Actor(Role.ADVERTISER, None)]
# The actor a command usually comes from; a random one is drawn now and then instead.
NATURAL_ACTORS: dict[str, list[Actor]] = {
    "create": [OWNER, PUBLISHER],
    "update": [OWNER, PUBLISHER],
    "extend_end": [OWNER, PUBLISHER],
    "submit": [OWNER],
    "approve": [PUBLISHER],
    "reject": [PUBLISHER],
    "start_due": [SYSTEM],
    "end_due": [SYSTEM],
    "pause": [OWNER, PUBLISHER],
    "resume": [OWNER, PUBLISHER],
    "cancel": [OWNER, PUBLISHER],
}
KINDS = list(NATURAL_ACTORS)
# Commands that make sense in a status (test knowledge, used to steer the sequences towards
# acceptance; the unsteered draws still try everything everywhere).
PLAUSIBLE: dict[Status, list[str]] = {
    Status.DRAFT: ["update", "submit", "submit", "cancel"],
    Status.SUBMITTED: ["approve", "approve", "reject", "cancel"],
    Status.BOOKED: ["start_due", "end_due", "pause", "cancel", "update", "extend_end"],
    Status.LIVE: ["end_due", "pause", "cancel", "update", "extend_end"],
    Status.PAUSED: ["resume", "end_due", "extend_end", "cancel", "update"],
    Status.REJECTED: ["update", "submit", "cancel"],
    Status.CLOSED: KINDS,
    Status.CANCELLED: KINDS,
}
CLOCK_STEPS = [timedelta(0), timedelta(hours=1), timedelta(hours=12), timedelta(days=1),
               timedelta(days=3)]  # fmt: skip
SHIFTS = [timedelta(days=-3), timedelta(0), timedelta(hours=-1), timedelta(hours=1),
          timedelta(days=4)]  # fmt: skip
MONEYS = [
    Money.of("0", "EUR"),
    Money.of("10.00", "EUR"),
    Money.of("1250", "EUR"),
    Money(Decimal("-1"), "EUR"),
    Money(Decimal("0.001"), "EUR"),
    Money.of("10", "USD"),
]
FIELD_VALUES: dict[str, list[object]] = {
    "title": ["Sale", "", "  ", "x" * 201, "Winter sale"],
    "ad_product_id": ["prod-1", "prod-2", "prod-gone", "prod-unknown"],
    "budget": list(MONEYS),
    "billing_type": [BillingType.CARD, BillingType.MANUAL],
    "targeting": [Targeting(), Targeting(categories=("books",))],
    "frequency_cap": [None, FrequencyCap(3, "day"), FrequencyCap(0, "day"), FrequencyCap(1, "y")],
    "contact": [Contact("Ada", "ada@example.com"), Contact("Ada", "nope"), Contact("A", "a@b\n")],
    "timezone": [None, "Europe/Berlin", "Nowhere/Special"],
    "advertiser_id": ["adv-1", "adv-2"],
    "start_at": list(SHIFTS),  # relative to the current start
    "end_at": list(SHIFTS),  # relative to the current end
}
TENTHS = list(range(10))


def draw_step(pick: Pick, campaign: Campaign | None, now: datetime) -> tuple[Command, Actor]:
    plausible = PLAUSIBLE[campaign.status] if campaign is not None else ["create"]
    focused = pick(TENTHS, "focused") > 3
    kind = pick(plausible if focused else KINDS, "kind")
    natural = pick(TENTHS, "natural actor") > 1
    actor = pick(NATURAL_ACTORS[kind] if natural else ANY_ACTOR, "actor")
    return draw_command(pick, kind, campaign, now), actor


def draw_command(pick: Pick, kind: str, campaign: Campaign | None, now: datetime) -> Command:
    cid = CAMPAIGN_ID
    start = campaign.start_at if campaign else now + timedelta(days=3)
    end = campaign.end_at if campaign else now + timedelta(days=10)

    def shift(label: str) -> timedelta:
        return pick(SHIFTS, label)

    if kind == "create":
        valid = pick(TENTHS, "valid create") > 1
        starts_in = pick(range(6), "starts in")
        return create_command(
            cid,
            start_at=now + timedelta(days=starts_in),
            end_at=now + timedelta(days=6) + shift("end"),
            budget=Money.of("1250", "EUR") if valid else pick(MONEYS, "budget"),
            ad_product_id="prod-1" if valid else pick(FIELD_VALUES["ad_product_id"], "product"),
        )
    if kind == "update":
        changes: dict[str, object] = {}
        for _ in range(pick(range(4), "how many fields")):
            name = pick(list(FIELD_VALUES), "field")
            value = pick(FIELD_VALUES[name], name)
            if name == "start_at":
                assert isinstance(value, timedelta)
                value = start + value
            elif name == "end_at":
                assert isinstance(value, timedelta)
                value = end + value
            changes[name] = value
        return UpdateCampaign(cid, changes)
    if kind == "extend_end":
        return ExtendEnd(cid, end + shift("extend by"))
    if kind == "reject":
        return RejectCampaign(cid, pick(["", "misleading"], "reason"))
    if kind == "cancel":
        penalty = pick([None, None, Money.of("5", "EUR"), Money.of("5", "USD")], "penalty")
        return CancelCampaign(cid, reason="because", penalty=penalty)
    if kind == "start_due":
        return StartDue(cid, start)
    if kind == "end_due":
        return EndDue(cid, end)
    simple: dict[str, type[SubmitCampaign | ApproveCampaign | PauseCampaign | ResumeCampaign]]
    simple = {
        "submit": SubmitCampaign,
        "approve": ApproveCampaign,
        "pause": PauseCampaign,
        "resume": ResumeCampaign,
    }
    return simple[kind](cid)


def check_campaign(campaign: Campaign) -> None:
    assert campaign.end_at > campaign.start_at
    assert campaign.start_at.tzinfo is UTC and campaign.end_at.tzinfo is UTC
    assert (campaign.paused_from is not None) == (campaign.status is Status.PAUSED)
    assert campaign.paused_from in (None, Status.BOOKED, Status.LIVE)


def step(
    campaign: Campaign | None,
    command: Command,
    actor: Actor,
    now: datetime,
    outcomes: Counter[str],
) -> Campaign | None:
    """Decide and apply one command, checking every invariant; returns the new state."""
    try:
        events = decide(campaign, command, actor, now, PRODUCTS)
    except Refusal as refusal:
        assert isinstance(refusal.code, RefusalCode)
        assert refusal.message
        outcomes[refusal.code.value] += 1
        return campaign  # refused: nothing changes

    assert campaign is None or campaign.status not in TERMINAL, "a terminal status moved"
    assert len(events) == 1, events
    (event,) = events
    if isinstance(command, CreateCampaign):
        assert isinstance(event, CampaignCreated)
        outcomes["created"] += 1
    elif isinstance(event, CampaignStatusChanged):
        assert campaign is not None and event.from_status is campaign.status
        transition = TRANSITIONS[(event.from_status, event.trigger)]
        if transition.target is None:
            assert event.to_status in (Status.BOOKED, Status.LIVE)
        else:
            assert event.to_status is transition.target
        assert actor.role in transition.roles
        assert event.rule == transition.rule
        outcomes[transition.rule] += 1
    else:
        assert isinstance(event, CampaignUpdated)
        outcomes["updated"] += 1

    after = evolve(campaign, event)
    assert after.version == (campaign.version + 1 if campaign is not None else 1)
    check_campaign(after)
    return after


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_command_sequences_keep_the_invariants(data: st.DataObject) -> None:
    def pick(options: Sequence[T], label: str) -> T:
        return data.draw(st.sampled_from(options), label=label)

    outcomes: Counter[str] = Counter()
    campaign: Campaign | None = None
    now = T0
    for _ in range(data.draw(st.integers(min_value=1, max_value=25), label="steps")):
        now += data.draw(st.sampled_from(CLOCK_STEPS), label="clock")
        command, actor = draw_step(pick, campaign, now)
        campaign = step(campaign, command, actor, now, outcomes)


def test_seeded_random_walk_keeps_the_invariants_and_fires_every_rule() -> None:
    rng = random.Random(20261127)

    def pick(options: Sequence[T], label: str) -> T:
        return rng.choice(options)

    outcomes: Counter[str] = Counter()
    for _ in range(300):
        campaign: Campaign | None = None
        now = T0
        for _ in range(25):
            now += rng.choice(CLOCK_STEPS)
            command, actor = draw_step(pick, campaign, now)
            campaign = step(campaign, command, actor, now, outcomes)
    for rule in (f"T{n}" for n in range(1, 12)):
        assert outcomes[rule] > 0, (rule, outcomes)
    for code in RefusalCode:
        if code is not RefusalCode.DUPLICATE_NOT_ALLOWED:  # duplication is not in this layer
            assert outcomes[code.value] > 0, (code, outcomes)
    assert outcomes["created"] and outcomes["updated"]
