"""Serving (spec §4): the verdict, the display-status priority (table-driven, expectations written
here by hand), and the holds each message sets or clears."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from itertools import combinations

import pytest

from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.model import (
    TERMINAL,
    Actor,
    BillingType,
    Campaign,
    Creative,
    CreativeContent,
    CreativeStatus,
    Status,
)
from campaign_worker.domain.serving import (
    DISPLAY_PRIORITY,
    HOLD_PRIORITY,
    HOLD_RULES,
    STATUS_DISPLAY,
    STORED_HOLDS,
    Hold,
    HoldsChanged,
    HoldSignal,
    Verdict,
    buyable_signal,
    display_status,
    evolve_holds,
    hold_changes,
    landing_page_signal,
    serving_verdict,
    sort_holds,
    verdict_changed,
)
from tests.unit.domain_builders import OWNER, PUBLISHER, SYSTEM, campaign_in

NOW = datetime(2026, 12, 5, tzinfo=UTC)
CONTENT = CreativeContent("https://cdn.example.com/a.png", "https://shop.example.com/", "Hi")

# The spec's display vocabulary (§4; "Activating/Processing" is shown as "Activating").
VOCABULARY = {
    "Draft", "Pending", "Activating", "Ready", "Running", "Paused", "Ended", "Terminated",
    "Rejected", "Billing error", "Out of budget", "ASIN not buyable",
    "Landing page not available", "Suspended", "Ad groups not running",
}  # fmt: skip


def creative(campaign: Campaign, status: CreativeStatus, n: int = 1, **kw: object) -> Creative:
    c = Creative(f"cr-{n}", campaign.id, f"Creative {n}", "unit-a", CONTENT, status)
    return replace(c, **kw)  # type: ignore[arg-type]


def approved(campaign: Campaign) -> list[Creative]:
    return [creative(campaign, CreativeStatus.APPROVED)]


def verdict(
    campaign: Campaign,
    creatives: list[Creative] | None = None,
    holds: frozenset[Hold] = frozenset(),
    charge_confirmed: bool = True,
) -> Verdict:
    return serving_verdict(
        campaign, approved(campaign) if creatives is None else creatives, holds, charge_confirmed
    )


# =============================================================================================
# The verdict
# =============================================================================================


def test_live_campaign_with_an_approved_creative_no_hold_and_a_confirmed_charge_serves() -> None:
    live = campaign_in(Status.LIVE)
    assert verdict(live) == Verdict(serving=True, holds=(), display_status="Running", reasons=())


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.LIVE])
def test_only_live_campaigns_serve(status: Status) -> None:
    result = verdict(campaign_in(status))
    assert not result.serving
    assert result.reasons[0] == f"the campaign is {status.value}, not LIVE"


@pytest.mark.parametrize(
    "others",
    [
        [],
        [CreativeStatus.UNDER_REVIEW],
        [CreativeStatus.REJECTED],
        [CreativeStatus.PAUSED],
        [CreativeStatus.UNDER_REVIEW, CreativeStatus.PAUSED, CreativeStatus.REJECTED],
    ],
)
def test_campaign_without_an_approved_creative_does_not_serve(
    others: list[CreativeStatus],
) -> None:
    live = campaign_in(Status.LIVE)
    creatives = [creative(live, s, n) for n, s in enumerate(others)]
    result = verdict(live, creatives)
    assert not result.serving
    assert result.holds == (Hold.NO_APPROVED_CREATIVES,)
    assert result.display_status == "Ad groups not running"


def test_deleted_approved_creative_does_not_count() -> None:
    live = campaign_in(Status.LIVE)
    gone = creative(live, CreativeStatus.APPROVED, deleted=True, deleted_at=NOW)
    assert verdict(live, [gone]).holds == (Hold.NO_APPROVED_CREATIVES,)


def test_pausing_the_only_approved_creative_stops_serving_and_another_keeps_it_serving() -> None:
    live = campaign_in(Status.LIVE)
    paused = creative(live, CreativeStatus.PAUSED, 1)
    assert not verdict(live, [paused]).serving
    assert verdict(live, [paused, creative(live, CreativeStatus.APPROVED, 2)]).serving


def test_no_approved_creatives_is_derived_never_stored() -> None:
    live = campaign_in(Status.LIVE)
    # passed in by mistake: ignored, because there is an approved creative
    assert verdict(live, holds=frozenset({Hold.NO_APPROVED_CREATIVES})).serving
    assert Hold.NO_APPROVED_CREATIVES not in STORED_HOLDS
    for rule in HOLD_RULES.values():
        assert Hold.NO_APPROVED_CREATIVES not in rule.sets | rule.clears
    with pytest.raises(ValueError):
        evolve_holds(
            frozenset(),
            HoldsChanged(
                live.id,
                HoldSignal.SUSPENDED,
                frozenset({Hold.NO_APPROVED_CREATIVES}),
                frozenset(),
            ),
        )


@pytest.mark.parametrize("hold", sorted(STORED_HOLDS))
def test_any_hold_stops_a_live_campaign(hold: Hold) -> None:
    result = verdict(campaign_in(Status.LIVE), holds=frozenset({hold}))
    assert not result.serving and result.holds == (hold,)
    assert len(result.reasons) == 1


def test_card_campaign_whose_charge_has_not_succeeded_does_not_serve() -> None:
    live = campaign_in(Status.LIVE, billing_type=BillingType.CARD)
    result = verdict(live, charge_confirmed=False)
    assert not result.serving and result.holds == ()
    assert result.display_status == "Activating"
    assert result.reasons == ("the card charge is not confirmed yet",)


def test_approved_card_campaign_is_activating_until_the_charge_is_confirmed() -> None:
    booked = campaign_in(Status.BOOKED, billing_type=BillingType.CARD)
    assert verdict(booked, charge_confirmed=False).display_status == "Activating"
    assert verdict(booked, charge_confirmed=True).display_status == "Ready"


def test_manual_campaign_serves_without_a_charge() -> None:
    live = campaign_in(Status.LIVE, billing_type=BillingType.MANUAL)
    assert verdict(live, charge_confirmed=False).serving


def test_verdict_lists_every_hold_by_priority_with_reasons() -> None:
    live = campaign_in(Status.LIVE)
    holds = frozenset({Hold.LOW_RELEVANCE, Hold.BILLING_ERROR, Hold.SUSPENDED})
    result = verdict(live, [], holds)
    assert result.holds == (
        Hold.SUSPENDED,
        Hold.BILLING_ERROR,
        Hold.LOW_RELEVANCE,
        Hold.NO_APPROVED_CREATIVES,
    )
    assert len(result.reasons) == 4


def test_creatives_of_another_campaign_are_a_caller_bug() -> None:
    live = campaign_in(Status.LIVE)
    with pytest.raises(ValueError):
        verdict(live, approved(campaign_in(Status.LIVE)))


# =============================================================================================
# Display status: the priority (expectations written by hand)
# =============================================================================================

# Highest first: what the display of a LIVE campaign shows when several reasons are present.
EXPECTED_ORDER: list[tuple[str, str]] = [
    ("suspended", "Suspended"),
    ("billing_error", "Billing error"),
    ("awaiting_charge", "Activating"),
    ("out_of_budget", "Out of budget"),
    ("product_not_buyable", "ASIN not buyable"),
    ("landing_page_unavailable", "Landing page not available"),
    ("low_relevance", "Suspended"),
    ("no_approved_creatives", "Ad groups not running"),
]

# Display with exactly one reason present, per status. BOOKED, LIVE and PAUSED are named by
# their stored holds (spec §4: a BOOKED or PAUSED campaign with a hold shows that hold); an
# unconfirmed charge names BOOKED and LIVE; the derived no_approved_creatives only LIVE.
SINGLE: dict[Status, dict[str, str]] = {
    Status.LIVE: dict(EXPECTED_ORDER),
    Status.BOOKED: {**dict(EXPECTED_ORDER), "no_approved_creatives": "Ready"},
    Status.PAUSED: {
        **dict(EXPECTED_ORDER),
        "awaiting_charge": "Paused",
        "no_approved_creatives": "Paused",
    },
    **{
        status: {reason: name for reason, _ in EXPECTED_ORDER}
        for status, name in [
            (Status.DRAFT, "Draft"),
            (Status.SUBMITTED, "Pending"),
            (Status.REJECTED, "Rejected"),
            (Status.CLOSED, "Ended"),
            (Status.CANCELLED, "Terminated"),
        ]
    },
}


def _present(reasons: tuple[str, ...]) -> tuple[frozenset[Hold], bool]:
    holds = frozenset(Hold(r) for r in reasons if r != "awaiting_charge")
    return holds, "awaiting_charge" in reasons


@pytest.mark.parametrize(
    ("status", "reason"),
    [(s, r) for s in Status for r, _ in EXPECTED_ORDER],
    ids=lambda v: str(v),
)
def test_display_status_for_each_single_reason(status: Status, reason: str) -> None:
    holds, awaiting = _present((reason,))
    assert display_status(status, holds, awaiting_charge=awaiting) == SINGLE[status][reason]


@pytest.mark.parametrize(
    ("higher", "lower"),
    list(combinations(range(len(EXPECTED_ORDER)), 2)),
)
def test_higher_priority_reason_names_the_display_of_a_live_campaign(
    higher: int, lower: int
) -> None:
    reasons = (EXPECTED_ORDER[higher][0], EXPECTED_ORDER[lower][0])
    holds, awaiting = _present(reasons)
    shown = display_status(Status.LIVE, holds, awaiting_charge=awaiting)
    assert shown == EXPECTED_ORDER[higher][1]


def test_display_status_without_reasons_is_the_status_name() -> None:
    expected = {
        Status.DRAFT: "Draft", Status.SUBMITTED: "Pending", Status.BOOKED: "Ready",
        Status.LIVE: "Running", Status.PAUSED: "Paused", Status.REJECTED: "Rejected",
        Status.CLOSED: "Ended", Status.CANCELLED: "Terminated",
    }  # fmt: skip
    for status, name in expected.items():
        assert display_status(status, (), awaiting_charge=False) == name
    assert set(STATUS_DISPLAY) == set(Status)  # the one table names every status


def test_the_priority_table_ranks_every_hold_once_and_speaks_the_spec_vocabulary() -> None:
    assert [h.value for h in HOLD_PRIORITY] == [
        r for r, _ in EXPECTED_ORDER if r != "awaiting_charge"
    ]
    assert sort_holds(reversed(list(Hold))) == HOLD_PRIORITY
    names = {row.display for row in DISPLAY_PRIORITY} | set(STATUS_DISPLAY.values())
    assert names == VOCABULARY


# =============================================================================================
# Holds set and cleared by messages
# =============================================================================================

H = Hold
# signal -> (holds it sets, holds it clears), written from the spec's hold table.
EXPECTED_SIGNALS: dict[HoldSignal, tuple[set[Hold], set[Hold]]] = {
    HoldSignal.SUSPENDED: ({H.SUSPENDED}, set()),
    HoldSignal.REINSTATED: (set(), {H.SUSPENDED, H.LOW_RELEVANCE}),
    HoldSignal.LANDING_PAGE_DOWN: ({H.LANDING_PAGE_UNAVAILABLE}, set()),
    HoldSignal.LANDING_PAGE_UP: (set(), {H.LANDING_PAGE_UNAVAILABLE}),
    HoldSignal.PRODUCT_NOT_BUYABLE: ({H.PRODUCT_NOT_BUYABLE}, set()),
    HoldSignal.PRODUCT_BUYABLE: (set(), {H.PRODUCT_NOT_BUYABLE}),
    HoldSignal.CHARGE_FAILED: ({H.BILLING_ERROR}, set()),
    HoldSignal.CHARGE_SUCCEEDED: (set(), {H.BILLING_ERROR}),
    HoldSignal.BUDGET_EXHAUSTED: ({H.OUT_OF_BUDGET}, set()),
    HoldSignal.RELEVANCE_LOW: ({H.LOW_RELEVANCE}, set()),
}
SENDER: dict[HoldSignal, Actor] = {
    HoldSignal.SUSPENDED: PUBLISHER,
    HoldSignal.REINSTATED: PUBLISHER,
    HoldSignal.LANDING_PAGE_DOWN: PUBLISHER,
    HoldSignal.LANDING_PAGE_UP: PUBLISHER,
    HoldSignal.PRODUCT_NOT_BUYABLE: PUBLISHER,
    HoldSignal.PRODUCT_BUYABLE: PUBLISHER,
    HoldSignal.CHARGE_FAILED: SYSTEM,
    HoldSignal.CHARGE_SUCCEEDED: SYSTEM,
    HoldSignal.BUDGET_EXHAUSTED: SYSTEM,
    HoldSignal.RELEVANCE_LOW: SYSTEM,
}


def apply_signal(
    campaign: Campaign,
    holds: frozenset[Hold],
    signal: HoldSignal,
    actor: Actor | None = None,
    reason: str | None = "policy",
) -> tuple[frozenset[Hold], list[HoldsChanged]]:
    events = hold_changes(campaign, holds, signal, actor or SENDER[signal], reason)
    for event in events:
        holds = evolve_holds(holds, event)
    return holds, events


@pytest.mark.parametrize("signal", list(HoldSignal))
def test_each_message_sets_or_clears_exactly_its_holds(signal: HoldSignal) -> None:
    live = campaign_in(Status.LIVE)
    sets, clears = EXPECTED_SIGNALS[signal]
    after_empty, _ = apply_signal(live, frozenset(), signal)
    assert after_empty == frozenset(sets)
    after_full, events = apply_signal(live, STORED_HOLDS, signal)
    assert after_full == STORED_HOLDS - clears
    assert [(e.added, e.removed) for e in events] == (
        [(frozenset(), frozenset(clears))] if clears else []
    )


@pytest.mark.parametrize("signal", list(HoldSignal))
def test_hold_messages_are_idempotent(signal: HoldSignal) -> None:
    live = campaign_in(Status.LIVE)
    once, _ = apply_signal(live, frozenset({Hold.BILLING_ERROR}), signal)
    twice, events = apply_signal(live, once, signal)
    assert twice == once and events == []


def test_out_of_budget_is_never_cleared() -> None:
    live = campaign_in(Status.LIVE)
    holds = frozenset({Hold.OUT_OF_BUDGET})
    for signal in HoldSignal:
        holds, _ = apply_signal(live, holds, signal)
        assert Hold.OUT_OF_BUDGET in holds, signal


def test_low_relevance_is_cleared_only_by_reinstatement() -> None:
    live = campaign_in(Status.LIVE)
    clearing = [
        signal
        for signal in HoldSignal
        if Hold.LOW_RELEVANCE not in apply_signal(live, frozenset({Hold.LOW_RELEVANCE}), signal)[0]
    ]
    assert clearing == [HoldSignal.REINSTATED]


def test_billing_error_is_set_by_a_failed_charge_and_cleared_by_a_later_success() -> None:
    live = campaign_in(Status.LIVE)
    holds, events = apply_signal(live, frozenset(), HoldSignal.CHARGE_FAILED)
    assert holds == {Hold.BILLING_ERROR} and events[0].signal is HoldSignal.CHARGE_FAILED
    assert not verdict(live, holds=holds).serving
    holds, _ = apply_signal(live, holds, HoldSignal.CHARGE_SUCCEEDED)
    assert holds == frozenset() and verdict(live, holds=holds).serving


def test_suspension_needs_a_reason_and_carries_it() -> None:
    live = campaign_in(Status.LIVE)
    for blank in (None, "", "  "):
        with pytest.raises(Refusal) as info:
            hold_changes(live, frozenset(), HoldSignal.SUSPENDED, PUBLISHER, blank)
        assert info.value.code is RefusalCode.VALIDATION_FAILED
    _, events = apply_signal(live, frozenset(), HoldSignal.SUSPENDED, reason=" spam ")
    assert events[0].reason == "spam"


@pytest.mark.parametrize("signal", list(HoldSignal))
def test_hold_messages_only_from_their_senders(signal: HoldSignal) -> None:
    live = campaign_in(Status.LIVE)
    allowed = HOLD_RULES[signal].roles
    for actor in (OWNER, PUBLISHER, SYSTEM):
        if actor.role in allowed:
            hold_changes(live, frozenset(), signal, actor, "policy")
        else:
            with pytest.raises(Refusal) as info:
                hold_changes(live, frozenset(), signal, actor, "policy")
            assert info.value.code is RefusalCode.FORBIDDEN
    assert OWNER.role not in allowed  # advertisers never set or clear holds


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_finished_campaign_refuses_suspend_and_reinstate_and_ignores_facts(status: Status) -> None:
    done = campaign_in(status)
    for signal in HoldSignal:
        if signal in (HoldSignal.SUSPENDED, HoldSignal.REINSTATED):
            with pytest.raises(Refusal) as info:
                hold_changes(done, frozenset({Hold.SUSPENDED}), signal, PUBLISHER, "policy")
            assert info.value.code is RefusalCode.INVALID_TRANSITION
        else:
            assert hold_changes(done, frozenset(), signal, SENDER[signal], None) == []


def test_landing_page_and_catalog_messages_map_to_signals() -> None:
    assert landing_page_signal(False) is HoldSignal.LANDING_PAGE_DOWN
    assert landing_page_signal(True) is HoldSignal.LANDING_PAGE_UP
    assert buyable_signal(False) is HoldSignal.PRODUCT_NOT_BUYABLE
    assert buyable_signal(True) is HoldSignal.PRODUCT_BUYABLE


def test_serving_changed_is_due_when_verdict_holds_or_display_change() -> None:
    live = campaign_in(Status.LIVE)
    running = verdict(live)
    assert verdict_changed(None, running)
    assert not verdict_changed(running, verdict(live))
    assert verdict_changed(running, verdict(live, holds=frozenset({Hold.SUSPENDED})))
    booked = campaign_in(Status.BOOKED)
    activating, ready = verdict(booked, charge_confirmed=False), verdict(booked)
    assert (activating.serving, activating.holds) == (ready.serving, ready.holds)
    assert verdict_changed(activating, ready)  # the display alone changed
    both = frozenset({Hold.SUSPENDED, Hold.LOW_RELEVANCE})
    only = frozenset({Hold.SUSPENDED})
    assert verdict(live, holds=both).display_status == verdict(live, holds=only).display_status
    assert verdict_changed(verdict(live, holds=both), verdict(live, holds=only))
