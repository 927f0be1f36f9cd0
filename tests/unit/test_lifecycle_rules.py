"""One test per rule of spec §1 (statuses and transitions), §2 (editing) and §8 (refusals)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import uuid4

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
from campaign_worker.domain.lifecycle import (
    Trigger,
    apply_all,
    decide,
    evolve,
    state_diagram_mermaid,
)
from campaign_worker.domain.model import (
    EDITABLE_FIELDS,
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
from campaign_worker.domain.serving import display_status
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
    eur,
    run,
)

APPROVED = (Status.BOOKED, Status.LIVE, Status.PAUSED)


def refused(
    campaign: Campaign | None, command: Command, actor: Actor, now: datetime = BEFORE_START
) -> Refusal:
    with pytest.raises(Refusal) as info:
        decide(campaign, command, actor, now, PRODUCTS)
    return info.value


def status_event(events: Sequence[object]) -> CampaignStatusChanged:
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, CampaignStatusChanged)
    return event


def update_event(events: Sequence[object]) -> CampaignUpdated:
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, CampaignUpdated)
    return event


# =============================================================================================
# §1 Creation
# =============================================================================================


def test_advertiser_creates_draft_campaign_with_version_one() -> None:
    command = create_command()
    campaign, events = run(None, command, OWNER)
    assert events == [CampaignCreated(campaign)]
    assert campaign.status is Status.DRAFT and campaign.version == 1
    assert campaign.id == command.campaign_id and campaign.advertiser_id == "adv-1"
    assert campaign.budget == eur("1250.00") and campaign.title == "Winter sale"


def test_publisher_creates_campaign_for_an_advertiser() -> None:
    campaign, _ = run(None, create_command(advertiser_id="adv-9"), PUBLISHER)
    assert campaign.advertiser_id == "adv-9" and campaign.status is Status.DRAFT


def test_advertiser_creates_only_for_itself() -> None:
    refusal = refused(None, create_command(advertiser_id="adv-2"), OWNER)
    assert refusal.code is RefusalCode.FORBIDDEN


def test_system_cannot_create_campaigns() -> None:
    assert refused(None, create_command(), SYSTEM).code is RefusalCode.FORBIDDEN


def test_create_existing_campaign_is_already_exists() -> None:
    existing = campaign_in(Status.DRAFT)
    refusal = refused(existing, create_command(existing.id), OWNER)
    assert refusal.code is RefusalCode.ALREADY_EXISTS


def test_ad_product_must_be_known_and_not_deleted_at_create() -> None:
    for product_id in ("prod-unknown", "prod-gone"):
        refusal = refused(None, create_command(ad_product_id=product_id), OWNER)
        assert refusal.code is RefusalCode.VALIDATION_FAILED
        assert product_id in refusal.message


def test_create_with_zero_budget_is_allowed_but_submit_is_not() -> None:
    campaign, _ = run(None, create_command(budget=eur("0")), OWNER)
    refusal = refused(campaign, SubmitCampaign(campaign.id), OWNER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED and "budget" in refusal.message


# =============================================================================================
# §1 Transitions T1-T11
# =============================================================================================


def test_advertiser_submits_draft_campaign() -> None:  # T1
    draft = campaign_in(Status.DRAFT)
    campaign, events = run(draft, SubmitCampaign(draft.id), OWNER)
    event = status_event(events)
    assert (event.from_status, event.to_status, event.trigger) == (
        Status.DRAFT,
        Status.SUBMITTED,
        Trigger.SUBMIT,
    )
    assert event.rule == "T1"
    assert campaign.status is Status.SUBMITTED and campaign.version == draft.version + 1


def test_ad_product_must_be_known_and_not_deleted_at_submit() -> None:
    for product_id in ("prod-unknown", "prod-gone"):
        draft = campaign_in(Status.DRAFT, ad_product_id=product_id)
        refusal = refused(draft, SubmitCampaign(draft.id), OWNER)
        assert refusal.code is RefusalCode.VALIDATION_FAILED
        assert product_id in refusal.message


def test_submit_needs_a_budget_above_zero() -> None:
    draft = campaign_in(Status.DRAFT, budget=Money.zero("EUR"))
    refusal = refused(draft, SubmitCampaign(draft.id), OWNER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED
    assert "budget" in refusal.message


def test_publisher_approves_submitted_campaign() -> None:  # T2
    submitted = campaign_in(Status.SUBMITTED)
    campaign, events = run(submitted, ApproveCampaign(submitted.id), PUBLISHER)
    assert status_event(events).trigger is Trigger.APPROVE
    assert campaign.status is Status.BOOKED


def test_publisher_rejects_submitted_campaign_with_reason() -> None:  # T3
    submitted = campaign_in(Status.SUBMITTED)
    campaign, events = run(
        submitted, RejectCampaign(submitted.id, "  misleading claims "), PUBLISHER
    )
    event = status_event(events)
    assert event.trigger is Trigger.REJECT and event.reason == "misleading claims"
    assert campaign.status is Status.REJECTED
    assert campaign.rejection_reason == "misleading claims"


@pytest.mark.parametrize("reason", ["", "   ", "\n"])
def test_reject_needs_a_reason(reason: str) -> None:
    submitted = campaign_in(Status.SUBMITTED)
    refusal = refused(submitted, RejectCampaign(submitted.id, reason), PUBLISHER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED and "reason" in refusal.message


def test_advertiser_resubmits_rejected_campaign() -> None:  # T4
    rejected = campaign_in(Status.REJECTED)
    campaign, events = run(rejected, SubmitCampaign(rejected.id), OWNER)
    event = status_event(events)
    assert event.trigger is Trigger.RESUBMIT and event.rule == "T4"
    assert campaign.status is Status.SUBMITTED and campaign.rejection_reason is None


def test_rejected_campaign_is_edited_then_resubmitted() -> None:
    rejected = campaign_in(Status.REJECTED)
    edited, _ = run(rejected, UpdateCampaign(rejected.id, {"title": "Clearer sale"}), OWNER)
    campaign, _ = run(edited, SubmitCampaign(edited.id), OWNER)
    assert campaign.status is Status.SUBMITTED and campaign.title == "Clearer sale"


def test_start_time_reached_makes_booked_campaign_live() -> None:  # T5
    booked = campaign_in(Status.BOOKED)
    campaign, events = run(booked, StartDue(booked.id, START), SYSTEM, now=START)
    event = status_event(events)
    assert (event.trigger, event.rule, event.to_status) == (Trigger.START, "T5", Status.LIVE)
    assert campaign.status is Status.LIVE


def test_start_that_is_not_due_is_refused() -> None:
    booked = campaign_in(Status.BOOKED)
    refusal = refused(booked, StartDue(booked.id, START), SYSTEM, now=START - timedelta(seconds=1))
    assert refusal.code is RefusalCode.INVALID_TRANSITION
    assert "not due" in refusal.message


def test_end_time_reached_closes_live_and_paused_campaigns() -> None:  # T6
    for status in (Status.LIVE, Status.PAUSED):
        running = campaign_in(status)
        campaign, events = run(running, EndDue(running.id, END), SYSTEM, now=END)
        event = status_event(events)
        assert (event.trigger, event.rule) == (Trigger.END, "T6")
        assert campaign.status is Status.CLOSED and campaign.paused_from is None


def test_end_time_reached_closes_booked_campaign_that_never_went_live() -> None:  # T7
    booked = campaign_in(Status.BOOKED)
    campaign, events = run(booked, EndDue(booked.id, END), SYSTEM, now=AFTER_END)
    event = status_event(events)
    assert (event.from_status, event.to_status, event.rule) == (Status.BOOKED, Status.CLOSED, "T7")
    assert campaign.status is Status.CLOSED


def test_missed_start_and_end_close_directly_without_going_live() -> None:  # T7 via start
    booked = campaign_in(Status.BOOKED)
    campaign, events = run(booked, StartDue(booked.id, START), SYSTEM, now=AFTER_END)
    event = status_event(events)
    assert (event.to_status, event.trigger, event.rule) == (Status.CLOSED, Trigger.END, "T7")
    assert campaign.status is Status.CLOSED


def test_end_that_is_not_due_is_refused() -> None:
    for status in APPROVED:
        campaign = campaign_in(status)
        refusal = refused(campaign, EndDue(campaign.id, END), SYSTEM, now=DURING)
        assert refusal.code is RefusalCode.INVALID_TRANSITION and "not due" in refusal.message


def test_start_and_end_due_are_judged_by_the_clock_not_the_message() -> None:
    booked = campaign_in(Status.BOOKED)
    # a stale start_due (the start was moved later meanwhile) changes nothing
    refusal = refused(booked, StartDue(booked.id, START - timedelta(days=3)), SYSTEM, BEFORE_START)
    assert refusal.code is RefusalCode.INVALID_TRANSITION


def test_pause_remembers_the_previous_status() -> None:  # T8
    for status, actor in [(Status.BOOKED, OWNER), (Status.LIVE, PUBLISHER)]:
        running = campaign_in(status)
        campaign, events = run(running, PauseCampaign(running.id), actor, now=DURING)
        assert status_event(events).trigger is Trigger.PAUSE
        assert campaign.status is Status.PAUSED and campaign.paused_from is status


def test_resume_returns_to_the_previous_status() -> None:  # T9
    for previous, now in [(Status.LIVE, DURING), (Status.BOOKED, BEFORE_START)]:
        paused = campaign_in(Status.PAUSED, paused_from=previous)
        campaign, events = run(paused, ResumeCampaign(paused.id), OWNER, now=now)
        event = status_event(events)
        assert (event.trigger, event.rule, event.to_status) == (Trigger.RESUME, "T9", previous)
        assert campaign.status is previous and campaign.paused_from is None


def test_resume_goes_live_when_start_passed_while_paused() -> None:
    booked = campaign_in(Status.BOOKED)
    paused, _ = run(booked, PauseCampaign(booked.id), OWNER, now=BEFORE_START)
    campaign, events = run(paused, ResumeCampaign(paused.id), PUBLISHER, now=START)
    assert status_event(events).to_status is Status.LIVE
    assert campaign.status is Status.LIVE


def test_start_due_while_paused_is_refused_and_resume_catches_up() -> None:
    paused = campaign_in(Status.PAUSED, paused_from=Status.BOOKED)
    refusal = refused(paused, StartDue(paused.id, START), SYSTEM, now=DURING)
    assert refusal.code is RefusalCode.INVALID_TRANSITION
    campaign, _ = run(paused, ResumeCampaign(paused.id), OWNER, now=DURING)
    assert campaign.status is Status.LIVE


def test_cancel_before_approval_by_advertiser_or_publisher() -> None:  # T10
    for status in (Status.DRAFT, Status.SUBMITTED, Status.REJECTED):
        for actor in (OWNER, PUBLISHER):
            before = campaign_in(status)
            campaign, events = run(before, CancelCampaign(before.id, reason="changed plans"), actor)
            event = status_event(events)
            assert (event.trigger, event.rule, event.reason) == (
                Trigger.CANCEL,
                "T10",
                "changed plans",
            )
            assert campaign.status is Status.CANCELLED
            assert campaign.cancel_reason == "changed plans" and campaign.penalty is None


def test_publisher_cancels_approved_campaign_with_optional_penalty() -> None:  # T11
    for status in APPROVED:
        before = campaign_in(status)
        campaign, events = run(
            before, CancelCampaign(before.id, "policy", eur("50.00")), PUBLISHER, now=DURING
        )
        event = status_event(events)
        assert (event.rule, event.penalty) == ("T11", eur("50.00"))
        assert campaign.status is Status.CANCELLED and campaign.penalty == eur("50.00")
        campaign, _ = run(before, CancelCampaign(before.id), PUBLISHER, now=DURING)
        assert campaign.status is Status.CANCELLED and campaign.penalty is None


def test_advertiser_cannot_cancel_booked_campaign() -> None:
    for status in APPROVED:  # BOOKED, LIVE and PAUSED alike
        campaign = campaign_in(status)
        refusal = refused(campaign, CancelCampaign(campaign.id), OWNER)
        assert refusal.code is RefusalCode.CONTACT_PUBLISHER
        assert "publisher" in refusal.message


def test_penalty_only_when_publisher_cancels_approved_campaign() -> None:
    for status, actor in [(Status.DRAFT, PUBLISHER), (Status.SUBMITTED, OWNER)]:
        campaign = campaign_in(status)
        refusal = refused(campaign, CancelCampaign(campaign.id, penalty=eur("5.00")), actor)
        assert refusal.code is RefusalCode.VALIDATION_FAILED and "penalty" in refusal.message


def test_penalty_currency_must_equal_budget_currency() -> None:
    live = campaign_in(Status.LIVE)
    command = CancelCampaign(live.id, penalty=Money.of("5.00", "USD"))
    refusal = refused(live, command, PUBLISHER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED and "USD" in refusal.message


def test_penalty_follows_money_rules() -> None:
    live = campaign_in(Status.LIVE)
    for penalty in (Money(Decimal("-1.00"), "EUR"), Money(Decimal("1.001"), "EUR")):
        refusal = refused(live, CancelCampaign(live.id, penalty=penalty), PUBLISHER)
        assert refusal.code is RefusalCode.VALIDATION_FAILED and "penalty" in refusal.message


def test_closed_and_cancelled_accept_nothing() -> None:
    for status in (Status.CLOSED, Status.CANCELLED):
        campaign = campaign_in(status)
        cid = campaign.id
        triggers: list[tuple[Command, Actor]] = [
            (SubmitCampaign(cid), OWNER),
            (ApproveCampaign(cid), PUBLISHER),
            (RejectCampaign(cid, "no"), PUBLISHER),
            (StartDue(cid, START), SYSTEM),
            (EndDue(cid, END), SYSTEM),
            (PauseCampaign(cid), OWNER),
            (ResumeCampaign(cid), PUBLISHER),
            (CancelCampaign(cid), OWNER),
            (CancelCampaign(cid), PUBLISHER),
        ]
        for command, actor in triggers:
            refusal = refused(campaign, command, actor, now=AFTER_END)
            assert refusal.code is RefusalCode.INVALID_TRANSITION, (status, command)
        for edit in (UpdateCampaign(cid, {"title": "x"}), ExtendEnd(cid, END + timedelta(1))):
            for actor in (OWNER, PUBLISHER):
                refusal = refused(campaign, edit, actor, now=AFTER_END)
                assert refusal.code is RefusalCode.NOT_EDITABLE, (status, edit)


def test_trigger_not_allowed_from_current_status_is_invalid_transition() -> None:
    draft = campaign_in(Status.DRAFT)
    refusal = refused(draft, PauseCampaign(draft.id), OWNER)
    assert refusal.code is RefusalCode.INVALID_TRANSITION
    assert "pause" in refusal.message and "DRAFT" in refusal.message


def test_end_before_start_is_refused() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    refusal = refused(None, create_command(start_at=at + timedelta(days=1), end_at=at), OWNER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED
    assert refusal.message == (
        "end_at 2026-01-01T00:00:00+00:00 must be after start_at 2026-01-02T00:00:00+00:00"
    )
    assert refused(None, create_command(end_at=START), OWNER).code is RefusalCode.VALIDATION_FAILED
    draft = campaign_in(Status.DRAFT)
    for changes in ({"end_at": START}, {"start_at": END}, {"start_at": END, "end_at": START}):
        refusal = refused(draft, UpdateCampaign(draft.id, changes), OWNER)
        assert refusal.code is RefusalCode.VALIDATION_FAILED and "end_at" in refusal.message
    live = campaign_in(Status.LIVE)
    refusal = refused(live, UpdateCampaign(live.id, {"start_at": END}), PUBLISHER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED


def test_start_and_end_are_utc_instants() -> None:
    cet = timezone(timedelta(hours=1))
    start = datetime(2026, 12, 1, 1, 0, tzinfo=cet)
    campaign, _ = run(None, create_command(start_at=start), OWNER)
    assert campaign.start_at == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert campaign.start_at.tzinfo is UTC
    naive = datetime(2026, 12, 1)
    refusal = refused(None, create_command(start_at=naive), OWNER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED and "start_at" in refusal.message


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError):
        decide(None, create_command(), OWNER, datetime(2026, 1, 1), PRODUCTS)


# =============================================================================================
# §2 Editing
# =============================================================================================

EVERY_FIELD_CHANGE: dict[str, object] = {
    "title": "Spring sale",
    "ad_product_id": "prod-2",
    "budget": eur("99.99"),
    "billing_type": BillingType.MANUAL,
    "start_at": START + timedelta(days=1),
    "end_at": END + timedelta(days=1),
    "targeting": Targeting(categories=("garden",), groups=("g1",)),
    "frequency_cap": None,
    "contact": Contact(name="Grace", email="grace@example.org"),
    "timezone": "Asia/Tokyo",
}


def test_every_editable_field_has_an_example_change() -> None:
    assert set(EVERY_FIELD_CHANGE) == set(EDITABLE_FIELDS)


def test_advertiser_edits_every_field_in_draft_and_rejected() -> None:
    for status in (Status.DRAFT, Status.REJECTED):
        before = campaign_in(status)
        campaign, events = run(before, UpdateCampaign(before.id, EVERY_FIELD_CHANGE), OWNER)
        assert dict(update_event(events).changes) == EVERY_FIELD_CHANGE
        for name, value in EVERY_FIELD_CHANGE.items():
            assert getattr(campaign, name) == value
        assert campaign.status is status and campaign.version == before.version + 1


def test_advertiser_may_only_extend_end_while_paused() -> None:
    paused = campaign_in(Status.PAUSED)
    later = END + timedelta(days=7)
    campaign, events = run(paused, UpdateCampaign(paused.id, {"end_at": later}), OWNER)
    assert dict(update_event(events).changes) == {"end_at": later}
    assert campaign.end_at == later
    campaign, _ = run(paused, ExtendEnd(paused.id, later), OWNER)
    assert campaign.end_at == later
    for name, value in EVERY_FIELD_CHANGE.items():
        if name == "end_at":
            continue
        refusal = refused(paused, UpdateCampaign(paused.id, {name: value, "end_at": later}), OWNER)
        assert refusal.code is RefusalCode.NOT_EDITABLE, name
        assert name in refusal.message


def test_advertiser_cannot_shorten_end_while_paused() -> None:
    paused = campaign_in(Status.PAUSED)
    for end in (END, END - timedelta(days=1)):
        for command in (UpdateCampaign(paused.id, {"end_at": end}), ExtendEnd(paused.id, end)):
            refusal = refused(paused, command, OWNER)
            assert refusal.code is RefusalCode.VALIDATION_FAILED and "end_at" in refusal.message


def test_advertiser_cannot_edit_submitted_campaign() -> None:
    submitted = campaign_in(Status.SUBMITTED)
    refusal = refused(submitted, UpdateCampaign(submitted.id, {"title": "New"}), OWNER)
    assert refusal.code is RefusalCode.NOT_EDITABLE
    assert "cancel and recreate" in refusal.message


def test_advertiser_cannot_edit_approved_campaign() -> None:
    for status in (Status.BOOKED, Status.LIVE):
        campaign = campaign_in(status)
        for command in (
            UpdateCampaign(campaign.id, {"title": "New"}),
            ExtendEnd(campaign.id, END + timedelta(days=1)),
        ):
            refusal = refused(campaign, command, OWNER)
            assert refusal.code is RefusalCode.NOT_EDITABLE
            assert "contact the publisher" in refusal.message


def test_publisher_edits_approved_campaign() -> None:
    editable = {
        k: v
        for k, v in EVERY_FIELD_CHANGE.items()
        if k not in {"ad_product_id", "budget", "billing_type"}
    }
    for status in APPROVED:
        before = campaign_in(status)
        # a LIVE campaign's start cannot move into the future (spec §1 "Dates", tested below)
        fields = {k: v for k, v in editable.items() if status is not Status.LIVE or k != "start_at"}
        campaign, events = run(before, UpdateCampaign(before.id, fields), PUBLISHER)
        assert dict(update_event(events).changes) == fields
        assert campaign.status is status and campaign.title == "Spring sale"
        earlier_end = END - timedelta(days=1)  # the publisher may also shorten
        campaign, _ = run(before, UpdateCampaign(before.id, {"end_at": earlier_end}), PUBLISHER)
        assert campaign.end_at == earlier_end


def test_publisher_cannot_change_budget_after_approval() -> None:
    for status in APPROVED:
        campaign = campaign_in(status)
        for name in ("budget", "ad_product_id", "billing_type"):
            command = UpdateCampaign(campaign.id, {name: EVERY_FIELD_CHANGE[name], "title": "T"})
            refusal = refused(campaign, command, PUBLISHER)
            assert refusal.code is RefusalCode.LOCKED_AFTER_APPROVAL, (status, name)
            assert name in refusal.message


def test_publisher_may_resend_locked_fields_unchanged() -> None:
    live = campaign_in(Status.LIVE)
    same = {"budget": eur("1250"), "ad_product_id": "prod-1", "billing_type": BillingType.CARD}
    _, events = run(live, UpdateCampaign(live.id, {**same, "title": "New"}), PUBLISHER)
    assert dict(update_event(events).changes) == {"title": "New"}


def test_publisher_cannot_edit_before_approval() -> None:
    for status in (Status.DRAFT, Status.SUBMITTED, Status.REJECTED):
        campaign = campaign_in(status)
        for command in (
            UpdateCampaign(campaign.id, {"title": "New"}),
            ExtendEnd(campaign.id, END + timedelta(days=1)),
        ):
            assert refused(campaign, command, PUBLISHER).code is RefusalCode.NOT_EDITABLE


def test_nobody_edits_closed_or_cancelled_campaigns() -> None:
    for status in (Status.CLOSED, Status.CANCELLED):
        campaign = campaign_in(status)
        for actor in (OWNER, PUBLISHER):
            refusal = refused(campaign, UpdateCampaign(campaign.id, {}), actor)
            assert refusal.code is RefusalCode.NOT_EDITABLE


def test_system_never_edits() -> None:
    for status in Status:
        campaign = campaign_in(status)
        for command in (
            UpdateCampaign(campaign.id, {"title": "New"}),
            ExtendEnd(campaign.id, END + timedelta(days=1)),
        ):
            assert refused(campaign, command, SYSTEM).code is RefusalCode.FORBIDDEN


def test_extend_end_needs_a_later_end() -> None:
    for status, actor in [
        (Status.DRAFT, OWNER),
        (Status.REJECTED, OWNER),
        (Status.LIVE, PUBLISHER),
    ]:
        campaign = campaign_in(status)
        for end in (END, END - timedelta(days=1)):
            refusal = refused(campaign, ExtendEnd(campaign.id, end), actor)
            assert refusal.code is RefusalCode.VALIDATION_FAILED and "end_at" in refusal.message
        later = END + timedelta(days=2)
        updated, events = run(campaign, ExtendEnd(campaign.id, later), actor)
        assert dict(update_event(events).changes) == {"end_at": later}
        assert updated.end_at == later


def test_update_with_unchanged_values_is_accepted_with_no_changes() -> None:
    draft = campaign_in(Status.DRAFT)
    same = {name: getattr(draft, name) for name in EDITABLE_FIELDS}
    campaign, events = run(draft, UpdateCampaign(draft.id, same), OWNER)
    assert events == [CampaignUpdated(draft.id, {})]
    assert campaign == replace(draft, version=draft.version + 1)
    paused = campaign_in(Status.PAUSED)
    _, events = run(paused, UpdateCampaign(paused.id, {"title": paused.title}), OWNER)
    assert update_event(events).changes == {}


def test_update_reports_only_changed_fields() -> None:
    draft = campaign_in(Status.DRAFT)
    changes = {"title": draft.title, "budget": eur("1250.0"), "timezone": "UTC"}
    _, events = run(draft, UpdateCampaign(draft.id, changes), OWNER)
    assert dict(update_event(events).changes) == {"timezone": "UTC"}


def test_advertiser_id_cannot_change() -> None:
    for status, actor in [(Status.DRAFT, OWNER), (Status.LIVE, PUBLISHER)]:
        campaign = campaign_in(status)
        refusal = refused(campaign, UpdateCampaign(campaign.id, {"advertiser_id": "adv-2"}), actor)
        assert refusal.code is RefusalCode.VALIDATION_FAILED and "advertiser_id" in refusal.message
        _, events = run(campaign, UpdateCampaign(campaign.id, {"advertiser_id": "adv-1"}), actor)
        assert update_event(events).changes == {}


def test_update_changing_ad_product_checks_the_catalog() -> None:
    draft = campaign_in(Status.DRAFT)
    for product_id in ("prod-unknown", "prod-gone"):
        refusal = refused(draft, UpdateCampaign(draft.id, {"ad_product_id": product_id}), OWNER)
        assert refusal.code is RefusalCode.VALIDATION_FAILED and product_id in refusal.message
    # an unchanged product is not re-checked (it was checked when it was set)
    old = campaign_in(Status.DRAFT, ad_product_id="prod-gone")
    _, events = run(
        old, UpdateCampaign(old.id, {"ad_product_id": "prod-gone", "title": "T"}), OWNER
    )
    assert dict(update_event(events).changes) == {"title": "T"}


def test_unknown_field_is_refused() -> None:
    draft = campaign_in(Status.DRAFT)
    refusal = refused(draft, UpdateCampaign(draft.id, {"status": "LIVE"}), OWNER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED and "status" in refusal.message


# -- field validation (everywhere a field is set: create, update, extend) ----------------------

INVALID_VALUES: list[tuple[str, object]] = [
    ("title", ""),
    ("title", "   "),
    ("title", "x" * 201),
    ("title", 42),
    ("ad_product_id", "prod-unknown"),
    ("budget", Money(Decimal("-1.00"), "EUR")),
    ("budget", Money(Decimal("1.001"), "EUR")),
    ("budget", "100.00"),
    ("billing_type", "invoice"),
    ("start_at", datetime(2026, 12, 1)),
    ("start_at", "2026-12-01T00:00:00Z"),
    ("end_at", datetime(2027, 1, 1)),
    ("targeting", ("books",)),
    ("targeting", Targeting(categories=("",))),
    ("frequency_cap", FrequencyCap(impressions=0, per="day")),
    ("frequency_cap", FrequencyCap(impressions=-3, per="day")),
    ("frequency_cap", FrequencyCap(impressions=3, per="fortnight")),
    ("frequency_cap", FrequencyCap(impressions=True, per="day")),
    ("contact", Contact(name="Ada", email="")),
    ("contact", Contact(name="Ada", email="   ")),
    ("contact", Contact(name="Ada", email="ada.example.com")),
    ("contact", Contact(name="Ada", email="ada@@example.com")),
    ("contact", Contact(name="Ada", email="a@b@example.com")),
    ("contact", Contact(name="Ada", email="ada@example.com\r\nBcc: x@y.z")),
    ("contact", Contact(name="Ada\nBcc: x@y.z", email="ada@example.com")),
    ("contact", Contact(name="Ada", email="@example.com")),
    ("timezone", "Mars/Olympus_Mons"),
    ("timezone", "../../etc/passwd"),
    ("timezone", ""),
    ("timezone", 1),
]


@pytest.mark.parametrize(("name", "value"), INVALID_VALUES)
def test_invalid_field_is_refused_on_create_and_update_naming_the_field(
    name: str, value: object
) -> None:
    refusal = refused(None, create_command(**{name: value}), OWNER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED
    assert name in refusal.message
    draft = campaign_in(Status.DRAFT)
    refusal = refused(draft, UpdateCampaign(draft.id, {name: value}), OWNER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED
    assert name in refusal.message


def test_naive_end_is_refused_on_extend() -> None:
    live = campaign_in(Status.LIVE)
    refusal = refused(live, ExtendEnd(live.id, datetime(2027, 1, 5)), PUBLISHER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED and "end_at" in refusal.message


def test_valid_optional_fields_are_accepted() -> None:
    command = create_command(
        title="x" * 200,
        timezone=None,
        frequency_cap=None,
        targeting=Targeting(),
        budget=Money.of("1000", "JPY"),
        billing_type="manual",
    )
    campaign, _ = run(None, command, PUBLISHER)
    assert campaign.billing_type is BillingType.MANUAL and campaign.timezone is None
    for per in ("hour", "day", "week", "month"):
        run(None, create_command(frequency_cap=FrequencyCap(1, per)), OWNER)


# =============================================================================================
# §8 Refusals: who may act
# =============================================================================================


def test_missing_campaign_is_not_found() -> None:
    refusal = refused(None, SubmitCampaign(uuid4()), OWNER)
    assert refusal.code is RefusalCode.NOT_FOUND
    # not_found comes before every other check, even the role
    assert refused(None, ApproveCampaign(uuid4()), SYSTEM).code is RefusalCode.NOT_FOUND


def test_advertiser_may_act_only_on_own_campaigns() -> None:
    for status in Status:
        campaign = campaign_in(status)
        for command in (
            SubmitCampaign(campaign.id),
            CancelCampaign(campaign.id),
            PauseCampaign(campaign.id),
            UpdateCampaign(campaign.id, {"title": "mine now"}),
        ):
            refusal = refused(campaign, command, OTHER_ADVERTISER)
            assert refusal.code is RefusalCode.FORBIDDEN and "own" in refusal.message


def test_advertiser_without_id_is_forbidden() -> None:
    draft = campaign_in(Status.DRAFT)
    for actor in (Actor(Role.ADVERTISER, None), Actor(Role.ADVERTISER, " ")):
        assert refused(draft, SubmitCampaign(draft.id), actor).code is RefusalCode.FORBIDDEN
        assert refused(None, create_command(), actor).code is RefusalCode.FORBIDDEN


def test_review_decisions_only_come_from_the_publisher() -> None:
    submitted = campaign_in(Status.SUBMITTED)
    for actor in (OWNER, SYSTEM):
        for command in (ApproveCampaign(submitted.id), RejectCampaign(submitted.id, "no")):
            assert refused(submitted, command, actor).code is RefusalCode.FORBIDDEN


def test_schedule_triggers_only_come_from_the_system() -> None:
    booked = campaign_in(Status.BOOKED)
    for actor in (OWNER, PUBLISHER):
        for command in (StartDue(booked.id, START), EndDue(booked.id, END)):
            assert refused(booked, command, actor, now=AFTER_END).code is RefusalCode.FORBIDDEN


def test_system_cannot_submit_pause_resume_or_cancel() -> None:
    live = campaign_in(Status.LIVE)
    for command in (
        SubmitCampaign(live.id),
        PauseCampaign(live.id),
        ResumeCampaign(live.id),
        CancelCampaign(live.id),
    ):
        assert refused(live, command, SYSTEM).code is RefusalCode.FORBIDDEN


def test_publisher_cannot_submit() -> None:
    draft = campaign_in(Status.DRAFT)
    assert refused(draft, SubmitCampaign(draft.id), PUBLISHER).code is RefusalCode.FORBIDDEN


def test_checks_run_in_order_forbidden_before_transition_before_validation() -> None:
    # ownership before transition rules
    closed = campaign_in(Status.CLOSED)
    refusal = refused(closed, UpdateCampaign(closed.id, {"title": ""}), OTHER_ADVERTISER)
    assert refusal.code is RefusalCode.FORBIDDEN
    # transition rules before validation
    submitted = campaign_in(Status.SUBMITTED)
    refusal = refused(submitted, RejectCampaign(submitted.id, ""), PUBLISHER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED
    booked = campaign_in(Status.BOOKED)
    refusal = refused(booked, RejectCampaign(booked.id, ""), PUBLISHER)
    assert refusal.code is RefusalCode.INVALID_TRANSITION
    refusal = refused(booked, CancelCampaign(booked.id, penalty=Money.of("1", "USD")), OWNER)
    assert refusal.code is RefusalCode.CONTACT_PUBLISHER
    # edit rules before field validation
    paused = campaign_in(Status.PAUSED)
    refusal = refused(paused, UpdateCampaign(paused.id, {"title": ""}), OWNER)
    assert refusal.code is RefusalCode.NOT_EDITABLE
    live = campaign_in(Status.LIVE)
    refusal = refused(
        live, UpdateCampaign(live.id, {"budget": Money(Decimal(-1), "EUR")}), PUBLISHER
    )
    assert refusal.code is RefusalCode.LOCKED_AFTER_APPROVAL


def test_decide_never_mutates_and_refusal_leaves_state_unchanged() -> None:
    live = campaign_in(Status.LIVE)
    snapshot = replace(live)
    changes = {"title": "New"}
    decide(live, UpdateCampaign(live.id, changes), PUBLISHER, DURING, PRODUCTS)
    with pytest.raises(Refusal):
        decide(live, CancelCampaign(live.id), OWNER, DURING, PRODUCTS)
    assert live == snapshot and changes == {"title": "New"}


def test_command_for_another_campaign_is_a_caller_bug() -> None:
    draft = campaign_in(Status.DRAFT)
    with pytest.raises(ValueError):
        decide(draft, SubmitCampaign(uuid4()), OWNER, BEFORE_START, PRODUCTS)


# =============================================================================================
# evolve, display status, diagram
# =============================================================================================


def test_every_event_increments_version_by_one() -> None:
    cid = uuid4()
    steps: list[tuple[Command, Actor, datetime]] = [
        (create_command(cid), OWNER, BEFORE_START),
        (UpdateCampaign(cid, {"title": "Sale"}), OWNER, BEFORE_START),
        (SubmitCampaign(cid), OWNER, BEFORE_START),
        (ApproveCampaign(cid), PUBLISHER, BEFORE_START),
        (PauseCampaign(cid), OWNER, BEFORE_START),
        (ExtendEnd(cid, END + timedelta(days=3)), OWNER, BEFORE_START),
        (ResumeCampaign(cid), OWNER, DURING),
        (EndDue(cid, END), SYSTEM, END + timedelta(days=3)),
    ]
    campaign: Campaign | None = None
    all_events = []
    for expected_version, (command, actor, now) in enumerate(steps, start=1):
        campaign, events = run(campaign, command, actor, now)
        all_events.extend(events)
        assert campaign.version == expected_version
    assert campaign is not None and campaign.status is Status.CLOSED
    assert apply_all(None, all_events) == campaign


def test_evolve_refuses_events_that_do_not_fit() -> None:
    draft = campaign_in(Status.DRAFT)
    wrong_source = CampaignStatusChanged(draft.id, Status.LIVE, Status.PAUSED, Trigger.PAUSE)
    with pytest.raises(ValueError):
        evolve(draft, wrong_source)
    with pytest.raises(ValueError):
        evolve(None, CampaignUpdated(draft.id, {}))
    with pytest.raises(ValueError):
        evolve(draft, CampaignCreated(draft))
    with pytest.raises(ValueError):
        apply_all(None, [])


def test_display_status_names_every_status() -> None:
    expected = {
        Status.DRAFT: "Draft",
        Status.SUBMITTED: "Pending",
        Status.BOOKED: "Ready",
        Status.LIVE: "Running",
        Status.PAUSED: "Paused",
        Status.REJECTED: "Rejected",
        Status.CLOSED: "Ended",
        Status.CANCELLED: "Terminated",
    }
    for status, name in expected.items():
        assert display_status(status, (), awaiting_charge=False) == name


def test_state_diagram_is_rendered_from_the_table() -> None:
    diagram = state_diagram_mermaid()
    assert diagram.startswith("stateDiagram-v2\n")
    for edge in (
        "DRAFT --> SUBMITTED: submit (advertiser) T1",
        "SUBMITTED --> BOOKED: approve (publisher) T2",
        "BOOKED --> CLOSED: end (system) T7",
        "PAUSED --> BOOKED: resume (advertiser, publisher) T9",
        "PAUSED --> LIVE: resume (advertiser, publisher) T9",
        "LIVE --> CANCELLED: cancel (publisher) T11",
        "CANCELLED --> [*]",
    ):
        assert edge in diagram
    rules_shown = {line.rsplit(" ", 1)[-1] for line in diagram.splitlines() if ": " in line}
    assert {f"T{n}" for n in range(1, 12)} <= rules_shown


# =============================================================================================
# §1 "Dates" (second pass)
# =============================================================================================


def test_submit_is_refused_when_the_end_has_passed() -> None:
    for status in (Status.DRAFT, Status.REJECTED):  # submit and resubmit
        campaign = campaign_in(status)
        refusal = refused(campaign, SubmitCampaign(campaign.id), OWNER, now=AFTER_END)
        assert refusal.code is RefusalCode.SCHEDULE_PASSED
        assert "end" in refusal.message


def test_submit_is_refused_when_start_is_not_before_end() -> None:
    campaign = campaign_in(Status.DRAFT, start_at=END, end_at=END)
    refusal = refused(campaign, SubmitCampaign(campaign.id), OWNER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED
    assert "end_at" in refusal.message


def test_unreviewed_campaign_whose_end_passes_is_cancelled_by_the_system() -> None:  # T12
    campaign = campaign_in(Status.SUBMITTED)
    after, events = run(campaign, EndDue(campaign.id, END), SYSTEM, now=AFTER_END)
    event = status_event(events)
    assert after.status is Status.CANCELLED
    assert (event.rule, event.reason) == ("T12", "review_expired")


def test_approval_after_the_end_has_passed_is_refused() -> None:
    campaign = campaign_in(Status.SUBMITTED)
    refusal = refused(campaign, ApproveCampaign(campaign.id), PUBLISHER, now=AFTER_END)
    assert refusal.code is RefusalCode.SCHEDULE_PASSED


def test_publisher_cannot_move_a_live_campaigns_start_into_the_future() -> None:
    campaign = campaign_in(Status.LIVE)
    later = DURING + timedelta(days=1)
    refusal = refused(campaign, UpdateCampaign(campaign.id, {"start_at": later}), PUBLISHER, DURING)
    assert refusal.code is RefusalCode.VALIDATION_FAILED
    assert "start cannot move into the future" in refusal.message
    earlier = START - timedelta(days=1)  # into the past is fine
    after, _ = run(campaign, UpdateCampaign(campaign.id, {"start_at": earlier}), PUBLISHER, DURING)
    assert after.start_at == earlier


def test_nobody_moves_an_end_to_a_time_already_past() -> None:
    past = DURING - timedelta(hours=1)
    for status, actor in ((Status.DRAFT, OWNER), (Status.BOOKED, PUBLISHER)):
        campaign = campaign_in(status, start_at=DURING - timedelta(days=2))
        refusal = refused(campaign, UpdateCampaign(campaign.id, {"end_at": past}), actor, DURING)
        assert refusal.code is RefusalCode.VALIDATION_FAILED
        assert "has already passed" in refusal.message


def test_a_refused_command_reports_every_problem_at_once() -> None:
    bad = create_command(
        contact=Contact(name="Ada", email="not-an-address"), start_at=END, end_at=START
    )
    refusal = refused(None, bad, OWNER)
    assert refusal.code is RefusalCode.VALIDATION_FAILED
    assert "contact.email" in refusal.message and "end_at" in refusal.message
    campaign = campaign_in(Status.DRAFT)
    edit = UpdateCampaign(campaign.id, {"title": " ", "contact": Contact("A", "x y@z")})
    refusal = refused(campaign, edit, OWNER)
    assert "title" in refusal.message and "contact.email" in refusal.message
