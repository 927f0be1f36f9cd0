"""Table-driven: every (status, command kind, role), against an outcome table written here by
hand from spec §1/§2/§8 (deliberately not derived from TRANSITIONS), plus graph checks on
TRANSITIONS (every status reachable, no trap status, terminal statuses have no way out)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

import pytest

from campaign_worker.domain.commands import (
    ApproveCampaign,
    CancelCampaign,
    Command,
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
from campaign_worker.domain.lifecycle import TRANSITIONS, Transition, Trigger, decide
from campaign_worker.domain.model import TERMINAL, Actor, Role, Status
from tests.unit.domain_builders import (
    AFTER_END,
    BEFORE_START,
    DURING,
    END,
    OTHER_ADVERTISER,
    OWNER,
    PRODUCTS,
    PUBLISHER,
    START,
    SYSTEM,
    campaign_in,
    create_command,
)

# -- the command kinds, each with the clock it is tried at -----------------------------------

KINDS: dict[str, tuple[Callable[[UUID], Command], datetime]] = {
    "submit": (SubmitCampaign, BEFORE_START),
    "approve": (ApproveCampaign, BEFORE_START),
    "reject": (lambda cid: RejectCampaign(cid, "misleading"), BEFORE_START),
    "start_due": (lambda cid: StartDue(cid, START), DURING),  # start passed, end not
    "end_due": (lambda cid: EndDue(cid, END), AFTER_END),
    "pause": (PauseCampaign, DURING),
    "resume": (ResumeCampaign, DURING),  # PAUSED campaigns here were paused from LIVE
    "cancel": (CancelCampaign, DURING),
    "update": (lambda cid: UpdateCampaign(cid, {"title": "Renamed"}), DURING),
    "extend_end": (lambda cid: ExtendEnd(cid, END + timedelta(days=7)), DURING),
}

ACTORS: dict[str, Actor] = {
    "owner": OWNER,
    "other_advertiser": OTHER_ADVERTISER,
    "publisher": PUBLISHER,
    "system": SYSTEM,
}

# -- the expected outcomes -------------------------------------------------------------------
# A Status: accepted, the campaign reaches it. "updated": accepted edit (status unchanged).
# A RefusalCode: refused with that code. The other advertiser is always FORBIDDEN (ownership
# is checked first), so it is not written per row.

F = RefusalCode.FORBIDDEN
INV = RefusalCode.INVALID_TRANSITION
NE = RefusalCode.NOT_EDITABLE
CP = RefusalCode.CONTACT_PUBLISHER
UPD = "updated"
Outcome = Status | RefusalCode | str

#                     kind          owner              publisher          system
EXPECTED: dict[Status, dict[str, tuple[Outcome, Outcome, Outcome]]] = {
    Status.DRAFT: {
        "submit":     (Status.SUBMITTED, F,                F),
        "approve":    (F,                INV,              F),
        "reject":     (F,                INV,              F),
        "start_due":  (F,                F,                INV),
        "end_due":    (F,                F,                INV),
        "pause":      (INV,              INV,              F),
        "resume":     (INV,              INV,              F),
        "cancel":     (Status.CANCELLED, Status.CANCELLED, F),
        "update":     (UPD,              NE,               F),
        "extend_end": (UPD,              NE,               F),
    },
    Status.SUBMITTED: {
        "submit":     (INV,              F,                F),
        "approve":    (F,                Status.BOOKED,    F),
        "reject":     (F,                Status.REJECTED,  F),
        "start_due":  (F,                F,                INV),
        "end_due":    (F,                F,                Status.CANCELLED),  # T12
        "pause":      (INV,              INV,              F),
        "resume":     (INV,              INV,              F),
        "cancel":     (Status.CANCELLED, Status.CANCELLED, F),
        "update":     (NE,               NE,               F),
        "extend_end": (NE,               NE,               F),
    },
    Status.BOOKED: {
        "submit":     (INV,              F,                F),
        "approve":    (F,                INV,              F),
        "reject":     (F,                INV,              F),
        "start_due":  (F,                F,                Status.LIVE),
        "end_due":    (F,                F,                Status.CLOSED),
        "pause":      (Status.PAUSED,    Status.PAUSED,    F),
        "resume":     (INV,              INV,              F),
        "cancel":     (CP,               Status.CANCELLED, F),
        "update":     (NE,               UPD,              F),
        "extend_end": (NE,               UPD,              F),
    },
    Status.LIVE: {
        "submit":     (INV,              F,                F),
        "approve":    (F,                INV,              F),
        "reject":     (F,                INV,              F),
        "start_due":  (F,                F,                INV),
        "end_due":    (F,                F,                Status.CLOSED),
        "pause":      (Status.PAUSED,    Status.PAUSED,    F),
        "resume":     (INV,              INV,              F),
        "cancel":     (CP,               Status.CANCELLED, F),
        "update":     (NE,               UPD,              F),
        "extend_end": (NE,               UPD,              F),
    },
    Status.PAUSED: {
        "submit":     (INV,              F,                F),
        "approve":    (F,                INV,              F),
        "reject":     (F,                INV,              F),
        "start_due":  (F,                F,                INV),
        "end_due":    (F,                F,                Status.CLOSED),
        "pause":      (INV,              INV,              F),
        "resume":     (Status.LIVE,      Status.LIVE,      F),
        "cancel":     (CP,               Status.CANCELLED, F),
        "update":     (NE,               UPD,              F),  # owner: only end_at
        "extend_end": (UPD,              UPD,              F),
    },
    Status.REJECTED: {
        "submit":     (Status.SUBMITTED, F,                F),
        "approve":    (F,                INV,              F),
        "reject":     (F,                INV,              F),
        "start_due":  (F,                F,                INV),
        "end_due":    (F,                F,                INV),
        "pause":      (INV,              INV,              F),
        "resume":     (INV,              INV,              F),
        "cancel":     (Status.CANCELLED, Status.CANCELLED, F),
        "update":     (UPD,              NE,               F),
        "extend_end": (UPD,              NE,               F),
    },
    Status.CLOSED: {
        "submit":     (INV,              F,                F),
        "approve":    (F,                INV,              F),
        "reject":     (F,                INV,              F),
        "start_due":  (F,                F,                INV),
        "end_due":    (F,                F,                INV),
        "pause":      (INV,              INV,              F),
        "resume":     (INV,              INV,              F),
        "cancel":     (INV,              INV,              F),
        "update":     (NE,               NE,               F),
        "extend_end": (NE,               NE,               F),
    },
    Status.CANCELLED: {
        "submit":     (INV,              F,                F),
        "approve":    (F,                INV,              F),
        "reject":     (F,                INV,              F),
        "start_due":  (F,                F,                INV),
        "end_due":    (F,                F,                INV),
        "pause":      (INV,              INV,              F),
        "resume":     (INV,              INV,              F),
        "cancel":     (INV,              INV,              F),
        "update":     (NE,               NE,               F),
        "extend_end": (NE,               NE,               F),
    },
}  # fmt: skip


def expected_outcome(status: Status, kind: str, actor_name: str) -> Outcome:
    if actor_name == "other_advertiser":
        return F
    owner, publisher, system = EXPECTED[status][kind]
    return {"owner": owner, "publisher": publisher, "system": system}[actor_name]


def test_expected_table_covers_every_status_and_kind() -> None:
    assert set(EXPECTED) == set(Status)
    for rows in EXPECTED.values():
        assert set(rows) == set(KINDS)


CASES = [
    pytest.param(status, kind, actor_name, id=f"{status.value}-{kind}-{actor_name}")
    for status in Status
    for kind in KINDS
    for actor_name in ACTORS
]


@pytest.mark.parametrize(("status", "kind", "actor_name"), CASES)
def test_every_status_command_and_role(status: Status, kind: str, actor_name: str) -> None:
    campaign = campaign_in(status)
    make, now = KINDS[kind]
    command = make(campaign.id)
    expected = expected_outcome(status, kind, actor_name)
    actor = ACTORS[actor_name]
    if isinstance(expected, RefusalCode):
        with pytest.raises(Refusal) as refused:
            decide(campaign, command, actor, now, PRODUCTS)
        assert refused.value.code is expected, refused.value.message
        assert refused.value.message
        return
    events = decide(campaign, command, actor, now, PRODUCTS)
    assert len(events) == 1
    (event,) = events
    if expected == UPD:
        assert isinstance(event, CampaignUpdated) and event.changes
    else:
        assert isinstance(event, CampaignStatusChanged)
        assert (event.from_status, event.to_status) == (status, expected)


@pytest.mark.parametrize("actor", [OWNER, PUBLISHER, SYSTEM, OTHER_ADVERTISER])
def test_create_for_every_role(actor: Actor) -> None:
    expected_ok = actor in (OWNER, PUBLISHER)
    if expected_ok:
        (event,) = decide(None, create_command(), actor, BEFORE_START, PRODUCTS)
        assert isinstance(event, CampaignCreated)
    else:
        with pytest.raises(Refusal) as refused:
            decide(None, create_command(), actor, BEFORE_START, PRODUCTS)
        assert refused.value.code is F
    for status in Status:  # existing campaign: already_exists whoever asks
        existing = campaign_in(status)
        with pytest.raises(Refusal) as refused:
            decide(existing, create_command(existing.id), actor, BEFORE_START, PRODUCTS)
        assert refused.value.code is RefusalCode.ALREADY_EXISTS


# -- the table itself, against the spec's rows --------------------------------------------

SPEC_ROWS = {
    # (from, trigger): (to, who, rule) -- spec §1 table, written out by hand
    (Status.DRAFT, Trigger.SUBMIT): (Status.SUBMITTED, {Role.ADVERTISER}, "T1"),
    (Status.SUBMITTED, Trigger.APPROVE): (Status.BOOKED, {Role.PUBLISHER}, "T2"),
    (Status.SUBMITTED, Trigger.REJECT): (Status.REJECTED, {Role.PUBLISHER}, "T3"),
    (Status.REJECTED, Trigger.RESUBMIT): (Status.SUBMITTED, {Role.ADVERTISER}, "T4"),
    (Status.BOOKED, Trigger.START): (Status.LIVE, {Role.SYSTEM}, "T5"),
    (Status.LIVE, Trigger.END): (Status.CLOSED, {Role.SYSTEM}, "T6"),
    (Status.PAUSED, Trigger.END): (Status.CLOSED, {Role.SYSTEM}, "T6"),
    (Status.BOOKED, Trigger.END): (Status.CLOSED, {Role.SYSTEM}, "T7"),
    (Status.BOOKED, Trigger.PAUSE): (Status.PAUSED, {Role.ADVERTISER, Role.PUBLISHER}, "T8"),
    (Status.LIVE, Trigger.PAUSE): (Status.PAUSED, {Role.ADVERTISER, Role.PUBLISHER}, "T8"),
    (Status.PAUSED, Trigger.RESUME): (None, {Role.ADVERTISER, Role.PUBLISHER}, "T9"),
    (Status.DRAFT, Trigger.CANCEL): (Status.CANCELLED, {Role.ADVERTISER, Role.PUBLISHER}, "T10"),
    (Status.SUBMITTED, Trigger.CANCEL): (
        Status.CANCELLED,
        {Role.ADVERTISER, Role.PUBLISHER},
        "T10",
    ),
    (Status.REJECTED, Trigger.CANCEL): (
        Status.CANCELLED,
        {Role.ADVERTISER, Role.PUBLISHER},
        "T10",
    ),
    (Status.BOOKED, Trigger.CANCEL): (Status.CANCELLED, {Role.PUBLISHER}, "T11"),
    (Status.LIVE, Trigger.CANCEL): (Status.CANCELLED, {Role.PUBLISHER}, "T11"),
    (Status.PAUSED, Trigger.CANCEL): (Status.CANCELLED, {Role.PUBLISHER}, "T11"),
    (Status.SUBMITTED, Trigger.END): (Status.CANCELLED, {Role.SYSTEM}, "T12"),
    # spec §7: the low-relevance stop ends the campaign (system only; from PAUSED too)
    (Status.LIVE, Trigger.STOP): (Status.CLOSED, {Role.SYSTEM}, "T13"),
    (Status.PAUSED, Trigger.STOP): (Status.CLOSED, {Role.SYSTEM}, "T13"),
}


def test_transition_table_is_exactly_the_spec_table() -> None:
    actual = {key: (t.target, set(t.roles), t.rule) for key, t in TRANSITIONS.items()}
    assert actual == SPEC_ROWS
    for (source, trigger), t in TRANSITIONS.items():
        assert isinstance(t, Transition) and (t.source, t.trigger) == (source, trigger)


def test_transition_table_is_frozen() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[(Status.CLOSED, Trigger.SUBMIT)] = TRANSITIONS[  # type: ignore[index]
            (Status.DRAFT, Trigger.SUBMIT)
        ]


# -- graph checks (python-statemachine style) ------------------------------------------------


def _successors(status: Status) -> set[Status]:
    result: set[Status] = set()
    for t in TRANSITIONS.values():
        if t.source is not status:
            continue
        if t.target is None:  # resume: any status the campaign can have been paused from
            result |= {u.source for u in TRANSITIONS.values() if u.target is Status.PAUSED}
        else:
            result.add(t.target)
    return result


def _reachable(start: Status) -> set[Status]:
    seen, frontier = {start}, [start]
    while frontier:
        for nxt in _successors(frontier.pop()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def test_every_status_is_reachable_from_draft() -> None:
    assert _reachable(Status.DRAFT) == set(Status)


def test_no_trap_status_every_non_terminal_status_can_end() -> None:
    for status in set(Status) - TERMINAL:
        assert _reachable(status) & TERMINAL, status
        assert Status.CANCELLED in _reachable(status), status


def test_terminal_statuses_have_no_outgoing_transition() -> None:
    assert TERMINAL == {Status.CLOSED, Status.CANCELLED}
    for status in TERMINAL:
        assert not [key for key in TRANSITIONS if key[0] is status]
        assert _successors(status) == set()


def test_every_trigger_is_used_by_the_table() -> None:
    assert {t.trigger for t in TRANSITIONS.values()} == set(Trigger)
