"""Creatives (spec §3): every (creative state, action, role) against an outcome table written
here by hand from the spec (deliberately not derived from CREATIVE_ACTIONS), then one test per
rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from campaign_worker.domain.commands import (
    ApproveCreative,
    CreateCreative,
    CreativeCommand,
    DeleteCreative,
    PauseCreative,
    RejectCreative,
    ResumeCreative,
    UpdateCreative,
)
from campaign_worker.domain.creatives import (
    CREATIVE_ACTIONS,
    CreativeAction,
    CreativeDeleted,
    CreativeEvent,
    CreativeRegistered,
    CreativeStatusChanged,
    CreativeUpdated,
    action_of,
    apply_creative_events,
    decide_creative,
    evolve_creative,
)
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.model import (
    TERMINAL,
    Actor,
    Campaign,
    Creative,
    CreativeContent,
    CreativeStatus,
    Role,
    Status,
)
from tests.unit.domain_builders import (
    OTHER_ADVERTISER,
    OWNER,
    PRODUCTS,
    PUBLISHER,
    SYSTEM,
    campaign_in,
)

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
CONTENT = CreativeContent(
    file_url="https://cdn.example.com/banner.png",
    destination_url="https://shop.example.com/winter",
    text="Warm socks, cold prices",
)
NEW_CONTENT = replace(CONTENT, file_url="https://cdn.example.com/banner-v2.png")
CREATIVE_ID = "cr-1"

US, UA, UR, UP = (
    CreativeStatus.UNDER_REVIEW,
    CreativeStatus.APPROVED,
    CreativeStatus.REJECTED,
    CreativeStatus.PAUSED,
)


def creative_of(campaign: Campaign, status: CreativeStatus = US, **overrides: object) -> Creative:
    creative = Creative(
        id=CREATIVE_ID,
        campaign_id=campaign.id,
        name="Socks banner",
        ad_unit_id="unit-a",
        content=CONTENT,
        status=status,
        rejection_reason="blurry" if status is UR else None,
        version=3,
    )
    return replace(creative, **overrides)  # type: ignore[arg-type]


def run(
    campaign: Campaign, creative: Creative | None, command: CreativeCommand, actor: Actor
) -> tuple[Creative, list[CreativeEvent]]:
    events = decide_creative(campaign, creative, command, actor, NOW)
    return apply_creative_events(creative, events), events


def refused(
    campaign: Campaign | None, creative: Creative | None, command: CreativeCommand, actor: Actor
) -> Refusal:
    with pytest.raises(Refusal) as info:
        decide_creative(campaign, creative, command, actor, NOW)
    return info.value


# =============================================================================================
# The table: every (state, action, role) on an open campaign
# =============================================================================================

ACTIONS: dict[str, Callable[[Campaign], CreativeCommand]] = {
    "register": lambda c: CreateCreative(c.id, CREATIVE_ID, "Socks banner", "unit-a", CONTENT),
    "edit_content": lambda c: UpdateCreative(c.id, CREATIVE_ID, {"content": NEW_CONTENT}),
    "edit_name": lambda c: UpdateCreative(c.id, CREATIVE_ID, {"name": "Socks banner 2"}),
    "delete": lambda c: DeleteCreative(c.id, CREATIVE_ID),
    "pause": lambda c: PauseCreative(c.id, CREATIVE_ID),
    "resume": lambda c: ResumeCreative(c.id, CREATIVE_ID),
    "approve": lambda c: ApproveCreative(c.id, CREATIVE_ID),
    "reject": lambda c: RejectCreative(c.id, CREATIVE_ID, "blurry"),
}
STATES = ["none", "UNDER_REVIEW", "APPROVED", "REJECTED", "PAUSED", "deleted"]

F = RefusalCode.FORBIDDEN
INV = RefusalCode.INVALID_TRANSITION
NF = RefusalCode.NOT_FOUND
AE = RefusalCode.ALREADY_EXISTS
GONE = "deleted"  # accepted: the creative became a tombstone
Outcome = CreativeStatus | RefusalCode | str

# Outcome for (owner advertiser, publisher). The system and another advertiser are always
# FORBIDDEN (checked below for every cell, not written per row).
#                  action          owner        publisher
EXPECTED: dict[str, dict[str, tuple[Outcome, Outcome]]] = {
    "none": {
        "register":     (US,   US),
        "edit_content": (NF,   NF),
        "edit_name":    (NF,   NF),
        "delete":       (NF,   NF),
        "pause":        (NF,   NF),
        "resume":       (NF,   NF),
        "approve":      (F,    NF),
        "reject":       (F,    NF),
    },
    "UNDER_REVIEW": {
        "register":     (AE,   AE),
        "edit_content": (US,   US),
        "edit_name":    (US,   US),
        "delete":       (GONE, GONE),
        "pause":        (INV,  INV),
        "resume":       (INV,  INV),
        "approve":      (F,    UA),
        "reject":       (F,    UR),
    },
    "APPROVED": {
        "register":     (AE,   AE),
        "edit_content": (US,   US),
        "edit_name":    (UA,   UA),
        "delete":       (GONE, GONE),
        "pause":        (UP,   UP),
        "resume":       (INV,  INV),
        "approve":      (F,    INV),
        "reject":       (F,    INV),
    },
    "REJECTED": {
        "register":     (AE,   AE),
        "edit_content": (US,   US),
        "edit_name":    (UR,   UR),
        "delete":       (GONE, GONE),
        "pause":        (INV,  INV),
        "resume":       (INV,  INV),
        "approve":      (F,    INV),
        "reject":       (F,    INV),
    },
    "PAUSED": {
        "register":     (AE,   AE),
        "edit_content": (US,   US),
        "edit_name":    (UP,   UP),
        "delete":       (GONE, GONE),
        "pause":        (INV,  INV),
        "resume":       (UA,   UA),
        "approve":      (F,    INV),
        "reject":       (F,    INV),
    },
    "deleted": {
        "register":     (AE,   AE),
        "edit_content": (INV,  INV),
        "edit_name":    (INV,  INV),
        "delete":       (INV,  INV),
        "pause":        (INV,  INV),
        "resume":       (INV,  INV),
        "approve":      (F,    INV),
        "reject":       (F,    INV),
    },
}  # fmt: skip


def creative_in(state: str, campaign: Campaign) -> Creative | None:
    if state == "none":
        return None
    if state == "deleted":
        return creative_of(campaign, UA, deleted=True, deleted_at=NOW - timedelta(days=1))
    return creative_of(campaign, CreativeStatus(state))


def check_outcome(
    campaign: Campaign,
    creative: Creative | None,
    command: CreativeCommand,
    actor: Actor,
    expected: Outcome,
) -> None:
    if isinstance(expected, RefusalCode):
        refusal = refused(campaign, creative, command, actor)
        assert refusal.code is expected, refusal
        assert refusal.message
        return
    after, events = run(campaign, creative, command, actor)
    if expected == GONE:
        assert after.deleted and after.deleted_at == NOW
        assert events == [CreativeDeleted(campaign.id, CREATIVE_ID, after.status, NOW)]
    else:
        assert after.status is expected and not after.deleted
    expected_version = 1 if creative is None else creative.version + len(events)
    assert after.version == expected_version


CELLS = [
    (state, action, role)
    for state in STATES
    for action in ACTIONS
    for role in ("owner", "publisher", "system", "other_advertiser")
]


@pytest.mark.parametrize(("state", "action", "role"), CELLS)
def test_every_creative_state_action_and_role_follows_the_table(
    state: str, action: str, role: str
) -> None:
    campaign = campaign_in(Status.LIVE)
    creative = creative_in(state, campaign)
    command = ACTIONS[action](campaign)
    actors = {"owner": OWNER, "publisher": PUBLISHER, "system": SYSTEM,
              "other_advertiser": OTHER_ADVERTISER}  # fmt: skip
    if role in ("system", "other_advertiser"):
        expected: Outcome = F
    else:
        expected = EXPECTED[state][action][0 if role == "owner" else 1]
    check_outcome(campaign, creative, command, actors[role], expected)


def test_the_outcome_table_covers_every_state_and_action() -> None:
    assert set(EXPECTED) == set(STATES)
    assert {row.value for row in CreativeAction} == set(ACTIONS)
    for state, row in EXPECTED.items():
        assert set(row) == set(ACTIONS), state


# Terminal campaigns: existence and tombstones are checked first; then everything is refused,
# edits as not_editable, status moves as invalid_transition.
NE = RefusalCode.NOT_EDITABLE
TERMINAL_EXPECTED: dict[str, dict[str, RefusalCode]] = {
    "none": {"register": NE, "edit_content": NF, "edit_name": NF, "delete": NF, "pause": NF,
             "resume": NF, "approve": NF, "reject": NF},
    "deleted": {"register": AE, "edit_content": INV, "edit_name": INV, "delete": INV,
                "pause": INV, "resume": INV, "approve": INV, "reject": INV},
    **{
        state: {"register": AE, "edit_content": NE, "edit_name": NE, "delete": NE, "pause": INV,
                "resume": INV, "approve": INV, "reject": INV}
        for state in ("UNDER_REVIEW", "APPROVED", "REJECTED", "PAUSED")
    },
}  # fmt: skip


@pytest.mark.parametrize("campaign_status", sorted(TERMINAL))
@pytest.mark.parametrize(("state", "action"), [(s, a) for s in STATES for a in ACTIONS])
def test_creatives_of_closed_or_cancelled_campaigns_accept_nothing(
    campaign_status: Status, state: str, action: str
) -> None:
    campaign = campaign_in(campaign_status)
    creative = creative_in(state, campaign)
    refusal = refused(campaign, creative, ACTIONS[action](campaign), PUBLISHER)
    assert refusal.code is TERMINAL_EXPECTED[state][action]


@pytest.mark.parametrize(
    "campaign_status", [s for s in Status if s not in TERMINAL], ids=lambda s: s.value
)
def test_creatives_can_be_registered_edited_and_deleted_in_every_open_campaign_status(
    campaign_status: Status,
) -> None:
    campaign = campaign_in(campaign_status)
    creative, _ = run(campaign, None, ACTIONS["register"](campaign), OWNER)
    creative, _ = run(campaign, creative, ACTIONS["edit_name"](campaign), OWNER)
    creative, _ = run(campaign, creative, ACTIONS["approve"](campaign), PUBLISHER)
    creative, _ = run(campaign, creative, ACTIONS["delete"](campaign), OWNER)
    assert creative.deleted


# =============================================================================================
# The action table as a graph
# =============================================================================================


def test_action_table_has_one_row_per_action_and_reviews_only_by_the_publisher() -> None:
    assert set(CREATIVE_ACTIONS) == set(CreativeAction)
    for action in (CreativeAction.APPROVE, CreativeAction.REJECT):
        assert CREATIVE_ACTIONS[action].roles == frozenset({Role.PUBLISHER})
    for rule in CREATIVE_ACTIONS.values():
        assert Role.SYSTEM not in rule.roles


def test_every_creative_status_is_reachable_and_can_be_deleted() -> None:
    reachable = {CREATIVE_ACTIONS[CreativeAction.REGISTER].target}
    frontier = set(reachable)
    while frontier:
        status = frontier.pop()
        for rule in CREATIVE_ACTIONS.values():
            if status in rule.sources and rule.target is not None and rule.target not in reachable:
                reachable.add(rule.target)
                frontier.add(rule.target)
    assert reachable == set(CreativeStatus)
    assert CREATIVE_ACTIONS[CreativeAction.DELETE].sources == frozenset(CreativeStatus)


# =============================================================================================
# One test per rule
# =============================================================================================


def test_registered_creative_is_under_review_with_version_one() -> None:
    campaign = campaign_in(Status.DRAFT)
    creative, events = run(campaign, None, ACTIONS["register"](campaign), OWNER)
    assert events == [CreativeRegistered(creative)]
    assert creative.status is US and creative.version == 1 and not creative.deleted
    assert (creative.id, creative.campaign_id) == (CREATIVE_ID, campaign.id)
    assert creative.content == CONTENT and creative.ad_unit_id == "unit-a"


def test_content_edit_sends_approved_creative_back_to_review() -> None:
    campaign = campaign_in(Status.LIVE)
    approved = creative_of(campaign, UA)
    creative, events = run(
        campaign,
        approved,
        UpdateCreative(campaign.id, CREATIVE_ID, {"content": NEW_CONTENT}),
        OWNER,
    )
    assert events == [
        CreativeUpdated(campaign.id, CREATIVE_ID, {"content": NEW_CONTENT}),
        CreativeStatusChanged(campaign.id, CREATIVE_ID, UA, US, CreativeAction.EDIT_CONTENT),
    ]
    assert creative.status is US and creative.content == NEW_CONTENT
    assert not creative.deliverable


def test_ad_unit_change_is_a_content_edit() -> None:
    campaign = campaign_in(Status.LIVE)
    command = UpdateCreative(campaign.id, CREATIVE_ID, {"ad_unit_id": "unit-b"})
    approved = creative_of(campaign, UA)
    assert action_of(command, approved) is CreativeAction.EDIT_CONTENT
    creative, _ = run(campaign, approved, command, PUBLISHER)
    assert creative.status is US and creative.ad_unit_id == "unit-b"


def test_name_only_edit_applies_at_once_and_keeps_the_status() -> None:
    campaign = campaign_in(Status.LIVE)
    for status in CreativeStatus:
        before = creative_of(campaign, status)
        command = UpdateCreative(campaign.id, CREATIVE_ID, {"name": "Renamed"})
        assert action_of(command, before) is CreativeAction.EDIT_NAME
        creative, events = run(campaign, before, command, OWNER)
        assert events == [CreativeUpdated(campaign.id, CREATIVE_ID, {"name": "Renamed"})]
        assert creative.name == "Renamed" and creative.status is status


def test_edit_that_restates_the_current_content_is_not_a_content_edit() -> None:
    campaign = campaign_in(Status.LIVE)
    approved = creative_of(campaign, UA)
    command = UpdateCreative(
        campaign.id, CREATIVE_ID, {"content": CONTENT, "ad_unit_id": "unit-a", "name": "New"}
    )
    creative, events = run(campaign, approved, command, OWNER)
    assert events == [CreativeUpdated(campaign.id, CREATIVE_ID, {"name": "New"})]
    assert creative.status is UA


def test_partial_content_is_merged_into_the_current_content() -> None:
    campaign = campaign_in(Status.LIVE)
    approved = creative_of(campaign, UA)
    command = UpdateCreative(campaign.id, CREATIVE_ID, {"content": {"text": "Now 20% off"}})
    creative, events = run(campaign, approved, command, OWNER)
    assert creative.content == replace(CONTENT, text="Now 20% off")
    assert creative.status is US
    assert isinstance(events[0], CreativeUpdated) and events[0].content_changed


def test_content_edit_of_rejected_creative_clears_the_rejection_reason() -> None:
    campaign = campaign_in(Status.LIVE)
    rejected = creative_of(campaign, UR)
    assert rejected.rejection_reason == "blurry"
    creative, _ = run(
        campaign,
        rejected,
        UpdateCreative(campaign.id, CREATIVE_ID, {"content": NEW_CONTENT}),
        OWNER,
    )
    assert creative.status is US and creative.rejection_reason is None


def test_content_edit_of_creative_under_review_keeps_it_under_review_without_status_event() -> None:
    campaign = campaign_in(Status.LIVE)
    under_review = creative_of(campaign, US)
    _, events = run(
        campaign,
        under_review,
        UpdateCreative(campaign.id, CREATIVE_ID, {"content": NEW_CONTENT}),
        OWNER,
    )
    assert [type(e) for e in events] == [CreativeUpdated]


def test_only_approved_creatives_can_pause() -> None:
    campaign = campaign_in(Status.LIVE)
    for status in CreativeStatus:
        command = PauseCreative(campaign.id, CREATIVE_ID)
        if status is UA:
            creative, events = run(campaign, creative_of(campaign, status), command, OWNER)
            assert creative.status is UP
            assert events == [
                CreativeStatusChanged(campaign.id, CREATIVE_ID, UA, UP, CreativeAction.PAUSE)
            ]
        else:
            refusal = refused(campaign, creative_of(campaign, status), command, OWNER)
            assert refusal.code is INV and status.value in refusal.message


def test_resume_returns_a_paused_creative_to_approved() -> None:
    campaign = campaign_in(Status.LIVE)
    creative, _ = run(
        campaign, creative_of(campaign, UP), ResumeCreative(campaign.id, CREATIVE_ID), PUBLISHER
    )
    assert creative.status is UA and creative.deliverable


def test_review_decisions_only_from_the_publisher_and_only_under_review() -> None:
    campaign = campaign_in(Status.BOOKED)
    under_review = creative_of(campaign, US)
    for actor in (OWNER, SYSTEM):
        assert (
            refused(campaign, under_review, ApproveCreative(campaign.id, CREATIVE_ID), actor).code
            is F
        )
    approved, _ = run(campaign, under_review, ApproveCreative(campaign.id, CREATIVE_ID), PUBLISHER)
    assert approved.status is UA
    again = refused(campaign, approved, ApproveCreative(campaign.id, CREATIVE_ID), PUBLISHER)
    assert again.code is INV


def test_rejection_needs_a_reason_and_keeps_it() -> None:
    campaign = campaign_in(Status.LIVE)
    under_review = creative_of(campaign, US)
    for blank in ("", "  ", "\n"):
        refusal = refused(
            campaign, under_review, RejectCreative(campaign.id, CREATIVE_ID, blank), PUBLISHER
        )
        assert refusal.code is RefusalCode.VALIDATION_FAILED and "reason" in refusal.message
    creative, events = run(
        campaign,
        under_review,
        RejectCreative(campaign.id, CREATIVE_ID, " blurry image "),
        PUBLISHER,
    )
    assert creative.status is UR and creative.rejection_reason == "blurry image"
    assert events == [
        CreativeStatusChanged(
            campaign.id, CREATIVE_ID, US, UR, CreativeAction.REJECT, "blurry image"
        )
    ]


def test_deleted_creative_accepts_nothing_and_keeps_a_tombstone() -> None:
    campaign = campaign_in(Status.LIVE)
    approved = creative_of(campaign, UA)
    tombstone, _ = run(campaign, approved, DeleteCreative(campaign.id, CREATIVE_ID), OWNER)
    assert tombstone.deleted and tombstone.deleted_at == NOW
    assert (tombstone.name, tombstone.content, tombstone.status) == (
        approved.name,
        approved.content,
        approved.status,
    )
    assert not tombstone.deliverable
    for action in ACTIONS:
        if action == "register":
            continue
        refusal = refused(campaign, tombstone, ACTIONS[action](campaign), PUBLISHER)
        assert refusal.code is INV and "deleted" in refusal.message


def test_deleted_creative_id_can_never_be_registered_again() -> None:
    campaign = campaign_in(Status.LIVE)
    tombstone = creative_of(campaign, UA, deleted=True, deleted_at=NOW)
    refusal = refused(campaign, tombstone, ACTIONS["register"](campaign), OWNER)
    assert refusal.code is AE and "deleted" in refusal.message


def test_advertiser_acts_only_on_creatives_of_its_own_campaigns() -> None:
    campaign = campaign_in(Status.LIVE)
    for action in ACTIONS:
        refusal = refused(
            campaign, creative_of(campaign, UA), ACTIONS[action](campaign), OTHER_ADVERTISER
        )
        assert refusal.code is F
    anonymous = Actor(Role.ADVERTISER, None)
    assert refused(campaign, None, ACTIONS["register"](campaign), anonymous).code is F


def test_creative_of_a_missing_campaign_is_not_found() -> None:
    command = PauseCreative(uuid4(), CREATIVE_ID)
    assert refused(None, None, command, OWNER).code is NF


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("name", "", "name"),
        ("name", "  ", "name"),
        ("name", "a\nb", "line breaks"),
        ("name", "x" * 201, "at most"),
        ("name", 42, "string"),
        ("ad_unit_id", " ", "ad_unit_id"),
        ("content", replace(CONTENT, destination_url="ftp://x.example/"), "http"),
        ("content", replace(CONTENT, destination_url="not a url"), "destination_url"),
        ("content", replace(CONTENT, destination_url="/relative"), "destination_url"),
        ("content", replace(CONTENT, file_url=""), "file_url"),
        ("content", {"colour": "red"}, "unknown content"),
        ("content", "https://x", "object"),
        ("colour", "red", "unknown creative field"),
    ],
)
def test_creative_fields_are_validated(field: str, value: object, needle: str) -> None:
    campaign = campaign_in(Status.DRAFT)
    creative = creative_of(campaign, US)
    refusal = refused(
        campaign, creative, UpdateCreative(campaign.id, CREATIVE_ID, {field: value}), OWNER
    )
    assert refusal.code is RefusalCode.VALIDATION_FAILED and needle in refusal.message
    if field in ("name", "ad_unit_id") or isinstance(value, CreativeContent):
        create = CreateCreative(campaign.id, "cr-new", "Socks banner", "unit-a", CONTENT)
        create = replace(create, **{field: value})  # type: ignore[arg-type]
        assert refused(campaign, None, replace(create, creative_id="cr-new"), OWNER).code is (
            RefusalCode.VALIDATION_FAILED
        )


def test_blank_creative_id_is_refused() -> None:
    campaign = campaign_in(Status.DRAFT)
    command = CreateCreative(campaign.id, " ", "Socks banner", "unit-a", CONTENT)
    assert refused(campaign, None, command, OWNER).code is RefusalCode.VALIDATION_FAILED


def test_decide_creative_mutates_nothing_and_needs_an_aware_clock() -> None:
    campaign = campaign_in(Status.LIVE)
    creative = creative_of(campaign, UA)
    snapshot = (campaign, creative)
    decide_creative(campaign, creative, PauseCreative(campaign.id, CREATIVE_ID), OWNER, NOW)
    assert (campaign, creative) == snapshot
    with pytest.raises(ValueError, match="timezone-aware"):
        decide_creative(
            campaign, creative, PauseCreative(campaign.id, CREATIVE_ID), OWNER, datetime(2026, 1, 1)
        )


def test_commands_and_creatives_of_another_campaign_are_caller_bugs() -> None:
    campaign = campaign_in(Status.LIVE)
    other = campaign_in(Status.LIVE)
    with pytest.raises(ValueError):
        decide_creative(campaign, None, PauseCreative(other.id, CREATIVE_ID), OWNER, NOW)
    with pytest.raises(ValueError):
        decide_creative(
            campaign, creative_of(other, UA), PauseCreative(campaign.id, CREATIVE_ID), OWNER, NOW
        )


def test_evolve_creative_refuses_events_that_do_not_fit() -> None:
    campaign = campaign_in(Status.LIVE)
    approved = creative_of(campaign, UA)
    with pytest.raises(ValueError):
        evolve_creative(approved, CreativeRegistered(approved))
    with pytest.raises(ValueError):
        evolve_creative(
            None, CreativeStatusChanged(campaign.id, CREATIVE_ID, UA, UP, CreativeAction.PAUSE)
        )
    with pytest.raises(ValueError):
        evolve_creative(
            approved, CreativeStatusChanged(campaign.id, CREATIVE_ID, UP, UA, CreativeAction.RESUME)
        )
    with pytest.raises(ValueError):
        evolve_creative(approved, CreativeUpdated(campaign.id, CREATIVE_ID, {"status": UP}))
    tombstone = replace(approved, deleted=True)
    with pytest.raises(ValueError):
        evolve_creative(tombstone, CreativeDeleted(campaign.id, CREATIVE_ID, UA, NOW))
    with pytest.raises(ValueError):
        apply_creative_events(None, [])


def test_update_command_and_event_changes_are_read_only() -> None:
    changes = {"name": "A"}
    command = UpdateCreative(uuid4(), CREATIVE_ID, changes)
    changes["name"] = "B"
    assert command.changes["name"] == "A"
    with pytest.raises(TypeError):
        command.changes["name"] = "C"  # type: ignore[index]


# =============================================================================================
# Second pass: ad units of the product, a pause that survives review
# =============================================================================================


def test_a_creative_must_use_an_ad_unit_of_its_product() -> None:
    campaign = campaign_in(Status.LIVE)
    product = PRODUCTS["prod-1"]  # units unit-a, unit-b
    register = CreateCreative(campaign.id, CREATIVE_ID, "Socks banner", "unit-z", CONTENT)
    with pytest.raises(Refusal) as info:
        decide_creative(campaign, None, register, OWNER, NOW, product)
    assert info.value.code is RefusalCode.VALIDATION_FAILED
    assert "'unit-z'" in info.value.message and "unit-a, unit-b" in info.value.message
    creative = creative_of(campaign, UA)
    edit = UpdateCreative(campaign.id, CREATIVE_ID, {"ad_unit_id": "unit-z"})
    with pytest.raises(Refusal) as info:
        decide_creative(campaign, creative, edit, OWNER, NOW, product)
    assert "'unit-z'" in info.value.message
    moved = UpdateCreative(campaign.id, CREATIVE_ID, {"ad_unit_id": "unit-b"})
    assert decide_creative(campaign, creative, moved, OWNER, NOW, product)
    legacy = creative_of(campaign, UA, ad_unit_id="unit-old")  # a name edit is not a content edit
    rename = UpdateCreative(campaign.id, CREATIVE_ID, {"name": "Renamed"})
    assert decide_creative(campaign, legacy, rename, OWNER, NOW, product)


def test_an_advertisers_pause_survives_a_content_edit_and_its_review() -> None:
    campaign = campaign_in(Status.LIVE)
    creative = creative_of(campaign, UA)
    creative, _ = run(campaign, creative, PauseCreative(campaign.id, CREATIVE_ID), OWNER)
    assert creative.status is UP and creative.paused
    edit = UpdateCreative(campaign.id, CREATIVE_ID, {"content": NEW_CONTENT})
    creative, _ = run(campaign, creative, edit, OWNER)
    assert creative.status is US and creative.paused
    approve = ApproveCreative(campaign.id, CREATIVE_ID)
    creative, events = run(campaign, creative, approve, PUBLISHER)
    assert creative.status is UP  # not APPROVED: the advertiser paused it
    assert isinstance(events[-1], CreativeStatusChanged) and events[-1].to_status is UP
    creative, _ = run(campaign, creative, ResumeCreative(campaign.id, CREATIVE_ID), OWNER)
    assert creative.status is UA and not creative.paused
