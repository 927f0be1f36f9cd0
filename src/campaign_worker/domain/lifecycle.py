"""The campaign lifecycle (spec §1, §2, §8): tables as data, `decide` and `evolve`.

- `TRANSITIONS` is the one transition table (T1-T13); whatever is not in it is refused.
- `EDIT_RIGHTS` is the one editing table (who may change what, in which status).
- `decide(campaign, command, actor, now, products)` checks a command and returns the events it
  causes (exactly one per accepted command) or raises `Refusal`. It never mutates anything and
  reads no clock: `now` is an argument.
- `evolve(campaign, event)` applies one event; `apply_all` folds many.

Order of checks in `decide`: missing campaign (`not_found`) / existing campaign on create
(`already_exists`); role and ownership (`forbidden`, decided by `permissions.PERMISSIONS`, of
which the roles of `TRANSITIONS` are the finer, per-status part); transition and edit rules
(`invalid_transition`, `contact_publisher`, `not_editable`, `locked_after_approval`); field
validation (`validation_failed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import assert_never
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaign_worker.domain.checks import aware_utc, coerce_str, invalid
from campaign_worker.domain.commands import (
    ApproveCampaign,
    CancelCampaign,
    CreateCampaign,
    EndDue,
    ExtendEnd,
    LifecycleCommand,
    PauseCampaign,
    RejectCampaign,
    ResumeCampaign,
    StartDue,
    SubmitCampaign,
    UpdateCampaign,
)
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.events import (
    CampaignCreated,
    CampaignStatusChanged,
    CampaignUpdated,
    Event,
)
from campaign_worker.domain.model import (
    EDITABLE_FIELDS,
    FREQUENCY_CAP_PERIODS,
    LOCKED_AFTER_APPROVAL,
    TERMINAL,
    Actor,
    AdProduct,
    BillingType,
    Campaign,
    Contact,
    FrequencyCap,
    Role,
    Status,
    Targeting,
    Trigger,
)
from campaign_worker.domain.money import Money
from campaign_worker.domain.permissions import check

__all__ = [
    "EDIT_RIGHTS",
    "REVIEW_EXPIRED",
    "TITLE_MAX_LENGTH",
    "TRANSITIONS",
    "EditRight",
    "Transition",
    "Trigger",
    "apply_all",
    "decide",
    "evolve",
    "state_diagram_mermaid",
    "stop_for_low_relevance",
]

TITLE_MAX_LENGTH = 200

# ---------------------------------------------------------------------------------------------
# The transition table (spec §1)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    source: Status
    trigger: Trigger
    target: Status | None  # None: back to the previous status (resume, T9)
    roles: frozenset[Role]
    rule: str  # the spec's T-number


_ADVERTISER = frozenset({Role.ADVERTISER})
_PUBLISHER = frozenset({Role.PUBLISHER})
_SYSTEM = frozenset({Role.SYSTEM})
_ADVERTISER_OR_PUBLISHER = frozenset({Role.ADVERTISER, Role.PUBLISHER})


def _table(*transitions: Transition) -> Mapping[tuple[Status, Trigger], Transition]:
    table: dict[tuple[Status, Trigger], Transition] = {}
    for t in transitions:
        key = (t.source, t.trigger)
        if key in table:  # pragma: no cover - a typo in the table below
            raise ValueError(f"duplicate transition {key}")
        table[key] = t
    return MappingProxyType(table)


TRANSITIONS: Mapping[tuple[Status, Trigger], Transition] = _table(
    Transition(Status.DRAFT, Trigger.SUBMIT, Status.SUBMITTED, _ADVERTISER, "T1"),
    Transition(Status.SUBMITTED, Trigger.APPROVE, Status.BOOKED, _PUBLISHER, "T2"),
    Transition(Status.SUBMITTED, Trigger.REJECT, Status.REJECTED, _PUBLISHER, "T3"),
    Transition(Status.REJECTED, Trigger.RESUBMIT, Status.SUBMITTED, _ADVERTISER, "T4"),
    Transition(Status.BOOKED, Trigger.START, Status.LIVE, _SYSTEM, "T5"),
    Transition(Status.LIVE, Trigger.END, Status.CLOSED, _SYSTEM, "T6"),
    Transition(Status.PAUSED, Trigger.END, Status.CLOSED, _SYSTEM, "T6"),
    Transition(Status.BOOKED, Trigger.END, Status.CLOSED, _SYSTEM, "T7"),
    Transition(Status.BOOKED, Trigger.PAUSE, Status.PAUSED, _ADVERTISER_OR_PUBLISHER, "T8"),
    Transition(Status.LIVE, Trigger.PAUSE, Status.PAUSED, _ADVERTISER_OR_PUBLISHER, "T8"),
    Transition(Status.PAUSED, Trigger.RESUME, None, _ADVERTISER_OR_PUBLISHER, "T9"),
    Transition(Status.DRAFT, Trigger.CANCEL, Status.CANCELLED, _ADVERTISER_OR_PUBLISHER, "T10"),
    Transition(Status.SUBMITTED, Trigger.CANCEL, Status.CANCELLED, _ADVERTISER_OR_PUBLISHER, "T10"),
    Transition(Status.REJECTED, Trigger.CANCEL, Status.CANCELLED, _ADVERTISER_OR_PUBLISHER, "T10"),
    Transition(Status.BOOKED, Trigger.CANCEL, Status.CANCELLED, _PUBLISHER, "T11"),
    Transition(Status.LIVE, Trigger.CANCEL, Status.CANCELLED, _PUBLISHER, "T11"),
    Transition(Status.PAUSED, Trigger.CANCEL, Status.CANCELLED, _PUBLISHER, "T11"),
    # the end passed before anyone reviewed it: the system cancels it (spec §1 "Dates")
    Transition(Status.SUBMITTED, Trigger.END, Status.CANCELLED, _SYSTEM, "T12"),
    # Spec §7: a low-relevance stop ends the campaign. From PAUSED too: its relevance is
    # measured on the impressions it had while LIVE, and a late report for a LIVE period may
    # cross the threshold after a pause; resuming it would only serve the same weak ads.
    Transition(Status.LIVE, Trigger.STOP, Status.CLOSED, _SYSTEM, "T13"),
    Transition(Status.PAUSED, Trigger.STOP, Status.CLOSED, _SYSTEM, "T13"),
)

# Why the system cancels an unreviewed campaign whose end passed (T12).
REVIEW_EXPIRED = "review_expired"
LOW_RELEVANCE = "low_relevance"  # the cause (reason) of a T13 stop


def stop_for_low_relevance(campaign: Campaign, actor: Actor) -> CampaignStatusChanged:
    """T13: the system closes a LIVE or PAUSED campaign whose relevance is too low (the
    service judges relevance, `settlement.relevance`). Refuses any other status or actor."""
    transition = TRANSITIONS.get((campaign.status, Trigger.STOP))
    if transition is None:
        raise Refusal(
            RefusalCode.INVALID_TRANSITION,
            f"cannot stop campaign {campaign.id} for low relevance: it is {campaign.status.value}",
        )
    check("relevance.stop", actor)
    return CampaignStatusChanged(
        campaign_id=campaign.id,
        from_status=campaign.status,
        to_status=Status.CLOSED,
        trigger=Trigger.STOP,
        reason=LOW_RELEVANCE,
        rule=transition.rule,
    )


# The inbound message type of each command: its row of `permissions.PERMISSIONS` decides who
# may send it at all (e.g. a publisher never submits, the system never cancels); the roles of
# a transition (above) then say who may fire it from a given status (T11).
ACTIONS: Mapping[type, str] = MappingProxyType(
    {
        CreateCampaign: "campaign.create",
        UpdateCampaign: "campaign.update",
        ExtendEnd: "campaign.extend_end",
        SubmitCampaign: "campaign.submit",
        ApproveCampaign: "review.campaign_approved",
        RejectCampaign: "review.campaign_rejected",
        StartDue: "schedule.start_due",
        EndDue: "schedule.end_due",
        PauseCampaign: "campaign.pause",
        ResumeCampaign: "campaign.resume",
        CancelCampaign: "campaign.cancel",
    }
)

# Statuses a campaign can be paused from (the possible "previous status" of T9).
_PAUSABLE: frozenset[Status] = frozenset(
    t.source for t in TRANSITIONS.values() if t.target is Status.PAUSED
)

# ---------------------------------------------------------------------------------------------
# The editing table (spec §2)
# ---------------------------------------------------------------------------------------------


class EditRight(StrEnum):
    ALL_FIELDS = "all_fields"
    EXTEND_END_ONLY = "extend_end_only"
    ALL_BUT_LOCKED = "all_but_locked"  # LOCKED_AFTER_APPROVAL fields may not change


EDIT_RIGHTS: Mapping[tuple[Role, Status], EditRight] = MappingProxyType(
    {
        (Role.ADVERTISER, Status.DRAFT): EditRight.ALL_FIELDS,
        (Role.ADVERTISER, Status.REJECTED): EditRight.ALL_FIELDS,
        (Role.ADVERTISER, Status.PAUSED): EditRight.EXTEND_END_ONLY,
        (Role.PUBLISHER, Status.BOOKED): EditRight.ALL_BUT_LOCKED,
        (Role.PUBLISHER, Status.LIVE): EditRight.ALL_BUT_LOCKED,
        (Role.PUBLISHER, Status.PAUSED): EditRight.ALL_BUT_LOCKED,
    }
)

# Why a (role, status) pair outside EDIT_RIGHTS may not edit: the advice in the refusal.
_NOT_EDITABLE_ADVICE: Mapping[tuple[Role, Status], str] = MappingProxyType(
    {
        (Role.ADVERTISER, Status.SUBMITTED): (
            "it is under review; cancel and recreate it to change it"
        ),
        (Role.ADVERTISER, Status.BOOKED): (
            "it is approved; contact the publisher to change it "
            "(pause it first to extend its end time)"
        ),
        (Role.ADVERTISER, Status.LIVE): (
            "it is approved; contact the publisher to change it "
            "(pause it first to extend its end time)"
        ),
        (Role.PUBLISHER, Status.DRAFT): (
            "the publisher edits only approved campaigns; before approval the advertiser does"
        ),
        (Role.PUBLISHER, Status.SUBMITTED): (
            "the publisher edits only approved campaigns; approve or reject it instead"
        ),
        (Role.PUBLISHER, Status.REJECTED): (
            "the publisher edits only approved campaigns; the advertiser edits and resubmits it"
        ),
    }
)

# ---------------------------------------------------------------------------------------------
# decide
# ---------------------------------------------------------------------------------------------


def decide(
    campaign: Campaign | None,
    command: LifecycleCommand,
    actor: Actor,
    now: datetime,
    products: Mapping[str, AdProduct],
) -> list[Event]:
    """The events `command` causes on `campaign`, or a `Refusal`. Pure: mutates nothing.

    `now` must be timezone-aware; `products` holds the catalog entries the command can touch.
    Raises `ValueError` for caller bugs (a naive `now`, a command for another campaign).
    """
    now = aware_utc(now, "now")
    if isinstance(command, CreateCampaign):
        if campaign is not None:
            raise Refusal(
                RefusalCode.ALREADY_EXISTS, f"campaign {command.campaign_id} already exists"
            )
        return [_create(command, actor, products, now)]
    if campaign is None:
        raise Refusal(RefusalCode.NOT_FOUND, f"campaign {command.campaign_id} does not exist")
    if campaign.id != command.campaign_id:
        raise ValueError(f"command for campaign {command.campaign_id} applied to {campaign.id}")
    check(ACTIONS[type(command)], actor, campaign.advertiser_id, f"campaign {campaign.id}")
    match command:
        case UpdateCampaign():
            return [_edit(campaign, command.changes, actor, products, now, extend=False)]
        case ExtendEnd():
            return [_edit(campaign, {"end_at": command.end_at}, actor, products, now, extend=True)]
        case (
            SubmitCampaign()
            | ApproveCampaign()
            | RejectCampaign()
            | StartDue()
            | EndDue()
            | PauseCampaign()
            | ResumeCampaign()
            | CancelCampaign()
        ):
            return [_transition(campaign, command, actor, now, products)]
        case _:  # pragma: no cover - exhaustive
            assert_never(command)


def _create(
    command: CreateCampaign, actor: Actor, products: Mapping[str, AdProduct], now: datetime
) -> CampaignCreated:
    check(ACTIONS[CreateCampaign], actor, command.advertiser_id)
    raw: dict[str, object] = {name: getattr(command, name) for name in EDITABLE_FIELDS}
    raw["advertiser_id"] = command.advertiser_id
    problems = _Problems()
    values = {name: problems.check(_coerce, name, value) for name, value in raw.items()}
    advertiser_id = values.pop("advertiser_id")
    if isinstance(advertiser_id, str) and not advertiser_id.strip():
        problems.add("advertiser_id must not be blank")
    for name, value in values.items():
        if value is not _INVALID:
            problems.check(_validate_field, name, value, products)
    start_at, end_at = values["start_at"], values["end_at"]
    if isinstance(start_at, datetime) and isinstance(end_at, datetime):
        problems.check(_check_period, start_at, end_at)
    problems.raise_any()
    assert isinstance(advertiser_id, str)
    campaign = Campaign(
        id=command.campaign_id,
        advertiser_id=advertiser_id,
        status=Status.DRAFT,
        version=1,
        **values,  # type: ignore[arg-type]  # each value was type-checked by _coerce
    )
    return CampaignCreated(campaign)


# -- transitions ------------------------------------------------------------------------------


def _trigger_of(command: LifecycleCommand, status: Status) -> Trigger:
    match command:
        case SubmitCampaign():
            return Trigger.RESUBMIT if status is Status.REJECTED else Trigger.SUBMIT
        case ApproveCampaign():
            return Trigger.APPROVE
        case RejectCampaign():
            return Trigger.REJECT
        case StartDue():
            return Trigger.START
        case EndDue():
            return Trigger.END
        case PauseCampaign():
            return Trigger.PAUSE
        case ResumeCampaign():
            return Trigger.RESUME
        case CancelCampaign():
            return Trigger.CANCEL
        case _:  # pragma: no cover
            raise TypeError(f"{type(command).__name__} is not a transition command")


def _roles_text(roles: Iterable[Role]) -> str:
    return ", ".join(r.value for r in Role if r in set(roles))


def _transition(
    campaign: Campaign,
    command: LifecycleCommand,
    actor: Actor,
    now: datetime,
    products: Mapping[str, AdProduct],
) -> CampaignStatusChanged:
    status = campaign.status
    trigger = _trigger_of(command, status)
    transition = TRANSITIONS.get((status, trigger))
    if transition is None:
        raise Refusal(
            RefusalCode.INVALID_TRANSITION,
            f"cannot {trigger.value} campaign {campaign.id}: it is {status.value}"
            + (" (terminal: it accepts nothing)" if status in TERMINAL else ""),
        )
    if actor.role not in transition.roles:
        if trigger is Trigger.CANCEL and actor.role is Role.ADVERTISER:
            raise Refusal(
                RefusalCode.CONTACT_PUBLISHER,
                f"campaign {campaign.id} is {status.value}: only the publisher can cancel it "
                f"now ({transition.rule}); contact the publisher",
            )
        raise Refusal(  # pragma: no cover - no such row in the current table
            RefusalCode.FORBIDDEN,
            f"a {actor.role.value} may not {trigger.value} a {status.value} campaign "
            f"(only: {_roles_text(transition.roles)})",
        )

    reason: str | None = None
    penalty: Money | None = None
    match command:
        case StartDue():
            if now < campaign.start_at:
                raise Refusal(
                    RefusalCode.INVALID_TRANSITION,
                    f"start of campaign {campaign.id} is not due: now {now.isoformat()} is "
                    f"before start_at {campaign.start_at.isoformat()}",
                )
            if now >= campaign.end_at:  # both start and end passed: T7 directly
                transition = TRANSITIONS[(status, Trigger.END)]
        case EndDue():
            if now < campaign.end_at:
                raise Refusal(
                    RefusalCode.INVALID_TRANSITION,
                    f"end of campaign {campaign.id} is not due: now {now.isoformat()} is "
                    f"before end_at {campaign.end_at.isoformat()}",
                )
            if status is Status.SUBMITTED:  # T12
                reason = REVIEW_EXPIRED
        case ApproveCampaign():
            _check_not_over(campaign, now, "approved", "")
        case RejectCampaign():
            if not isinstance(command.reason, str) or not command.reason.strip():
                raise Refusal(
                    RefusalCode.VALIDATION_FAILED, "reason is required to reject a campaign"
                )
            reason = command.reason.strip()
        case CancelCampaign():
            reason = command.reason
            penalty = command.penalty
            if penalty is not None:
                _check_penalty(campaign, transition, actor, penalty)
        case SubmitCampaign():
            _check_not_over(campaign, now, "submitted", "; move the end (and start) first")
            problems = _Problems()
            problems.check(_validate_product, campaign.ad_product_id, products)
            if not campaign.budget.amount > 0:
                problems.add(f"budget must be greater than 0 to submit (it is {campaign.budget})")
            problems.check(_check_period, campaign.start_at, campaign.end_at)
            problems.raise_any()
        case _:
            pass

    target = transition.target
    if target is None:  # resume (T9): back to the previous status
        target = _resume_target(campaign, now)
    return CampaignStatusChanged(
        campaign_id=campaign.id,
        from_status=status,
        to_status=target,
        trigger=transition.trigger,
        reason=reason,
        penalty=penalty,
        rule=transition.rule,
    )


def _check_not_over(campaign: Campaign, now: datetime, what: str, advice: str) -> None:
    """Submit, resubmit and approval need an end still ahead (spec §1 "Dates")."""
    if now >= campaign.end_at:
        raise Refusal(
            RefusalCode.SCHEDULE_PASSED,
            f"campaign {campaign.id} cannot be {what}: its end {campaign.end_at.isoformat()} "
            f"has passed{advice}",
        )


def _resume_target(campaign: Campaign, now: datetime) -> Status:
    previous = campaign.paused_from
    if previous not in _PAUSABLE:  # not recorded: infer it from the clock
        previous = Status.BOOKED
    if previous is Status.BOOKED and now >= campaign.start_at:
        return Status.LIVE  # the start passed while paused
    assert previous is not None
    return previous


def _check_penalty(
    campaign: Campaign, transition: Transition, actor: Actor, penalty: Money
) -> None:
    if transition.rule != "T11" or actor.role is not Role.PUBLISHER:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            "penalty is only allowed when the publisher cancels a BOOKED, LIVE or PAUSED "
            f"campaign (T11); campaign {campaign.id} is {campaign.status.value}",
        )
    if not isinstance(penalty, Money):
        raise Refusal(RefusalCode.VALIDATION_FAILED, "penalty must be money")
    if penalty.currency != campaign.budget.currency:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"penalty currency {penalty.currency} must equal the budget currency "
            f"{campaign.budget.currency}",
        )
    _check_money("penalty", penalty)


# -- editing ----------------------------------------------------------------------------------


def _edit(
    campaign: Campaign,
    changes: Mapping[str, object],
    actor: Actor,
    products: Mapping[str, AdProduct],
    now: datetime,
    *,
    extend: bool,
) -> CampaignUpdated:
    status = campaign.status  # the system never edits: `decide` refused it (PERMISSIONS)
    if status in TERMINAL:
        raise Refusal(
            RefusalCode.NOT_EDITABLE,
            f"campaign {campaign.id} is {status.value}: it can no longer be edited",
        )
    right = EDIT_RIGHTS.get((actor.role, status))
    if right is None:
        advice = _NOT_EDITABLE_ADVICE.get((actor.role, status), "it is not editable now")
        raise Refusal(
            RefusalCode.NOT_EDITABLE,
            f"a {actor.role.value} cannot edit campaign {campaign.id} while it is "
            f"{status.value}: {advice}",
        )

    unknown = sorted(set(changes) - set(EDITABLE_FIELDS) - {"advertiser_id"})
    if unknown:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"unknown field(s) {', '.join(unknown)}; editable: {', '.join(EDITABLE_FIELDS)}",
        )
    # Normalised new values of the fields that really change, in EDITABLE_FIELDS order.
    problems = _Problems()
    values = {name: problems.check(_coerce, name, value) for name, value in changes.items()}
    problems.raise_any()
    diff = {
        name: values[name]
        for name in (*EDITABLE_FIELDS, "advertiser_id")
        if name in values and values[name] != getattr(campaign, name)
    }

    # Edit rules.
    if right is EditRight.EXTEND_END_ONLY:
        others = [name for name in diff if name not in ("end_at", "advertiser_id")]
        if others:
            raise Refusal(
                RefusalCode.NOT_EDITABLE,
                f"while campaign {campaign.id} is PAUSED the advertiser may only extend "
                f"end_at; {', '.join(others)} cannot change",
            )
    elif right is EditRight.ALL_BUT_LOCKED:
        locked = [name for name in diff if name in LOCKED_AFTER_APPROVAL]
        if locked:
            raise Refusal(
                RefusalCode.LOCKED_AFTER_APPROVAL,
                f"{', '.join(locked)} of campaign {campaign.id} cannot change after approval",
            )
    if (extend or right is EditRight.EXTEND_END_ONLY) and "end_at" in values:
        new_end = values["end_at"]
        assert isinstance(new_end, datetime)
        if not new_end > campaign.end_at:
            raise Refusal(
                RefusalCode.VALIDATION_FAILED,
                f"end_at {new_end.isoformat()} must be later than the current end_at "
                f"{campaign.end_at.isoformat()} (only extending is allowed)",
            )

    # Field validation (of what changes).
    if "advertiser_id" in diff:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"advertiser_id cannot change (campaign {campaign.id} belongs to "
            f"{campaign.advertiser_id})",
        )
    for name, value in diff.items():
        problems.check(_validate_field, name, value, products)
    if "start_at" in diff or "end_at" in diff:
        start_at = diff.get("start_at", campaign.start_at)
        end_at = diff.get("end_at", campaign.end_at)
        assert isinstance(start_at, datetime) and isinstance(end_at, datetime)
        problems.check(_check_period, start_at, end_at)
        problems.check(_check_moved_dates, campaign, diff, now)
    problems.raise_any()
    return CampaignUpdated(campaign_id=campaign.id, changes=diff)


def _check_moved_dates(campaign: Campaign, diff: Mapping[str, object], now: datetime) -> None:
    """Nobody moves a LIVE campaign's start into the future, nor any end to a time already
    past (spec §1 "Dates")."""
    problems = _Problems()
    start_at, end_at = diff.get("start_at"), diff.get("end_at")
    if campaign.status is Status.LIVE and isinstance(start_at, datetime) and start_at > now:
        problems.add(
            f"start_at {start_at.isoformat()} is in the future, but campaign {campaign.id} is "
            "LIVE: its start cannot move into the future"
        )
    if isinstance(end_at, datetime) and end_at <= now:
        problems.add(f"end_at {end_at.isoformat()} has already passed: an end cannot move there")
    problems.raise_any()


_INVALID = object()  # stands for a value that failed its check


class _Problems:
    """Every validation problem of one command, reported together in one refusal."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def check(self, fn: Callable[..., object], *args: object) -> object:
        """`fn(*args)`; a `validation_failed` refusal is noted (and `_INVALID` returned)."""
        try:
            return fn(*args)
        except Refusal as refusal:
            if refusal.code is not RefusalCode.VALIDATION_FAILED:
                raise
            self.messages.append(refusal.message)
            return _INVALID

    def raise_any(self) -> None:
        if self.messages:
            raise invalid("; ".join(self.messages))


# -- field coercion (types) and validation (content) --------------------------------------------


def _coerce_datetime(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise invalid(f"{name} must be a timezone-aware datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise invalid(f"{name} {value.isoformat()} must carry a time zone (UTC instant)")
    return value.astimezone(UTC)


def _coerce_billing_type(name: str, value: object) -> BillingType:
    if isinstance(value, BillingType):
        return value
    if isinstance(value, str) and value in BillingType._value2member_map_:
        return BillingType(value)
    raise invalid(f"{name} must be one of {', '.join(b.value for b in BillingType)}")


def _coerce_money(name: str, value: object) -> Money:
    if not isinstance(value, Money):
        raise invalid(f"{name} must be money, not {type(value).__name__}")
    return value


def _coerce_targeting(name: str, value: object) -> Targeting:
    if not isinstance(value, Targeting):
        raise invalid(f"{name} must be targeting, not {type(value).__name__}")
    for part in ("categories", "groups"):
        items = getattr(value, part)
        if not isinstance(items, tuple) or not all(isinstance(i, str) for i in items):
            raise invalid(f"{name}.{part} must be a tuple of strings")
    return value


def _coerce_frequency_cap(name: str, value: object) -> FrequencyCap | None:
    if value is None:
        return None
    if not isinstance(value, FrequencyCap):
        raise invalid(f"{name} must be a frequency cap or null, not {type(value).__name__}")
    return value


def _coerce_contact(name: str, value: object) -> Contact:
    if not isinstance(value, Contact):
        raise invalid(f"{name} must be a contact, not {type(value).__name__}")
    if not isinstance(value.name, str) or not isinstance(value.email, str):
        raise invalid(f"{name}.name and {name}.email must be strings")
    return value


def _coerce_timezone(name: str, value: object) -> str | None:
    if value is None:
        return None
    return coerce_str(name, value)


_COERCERS: Mapping[str, Callable[[str, object], object]] = MappingProxyType(
    {
        "advertiser_id": coerce_str,
        "title": coerce_str,
        "ad_product_id": coerce_str,
        "budget": _coerce_money,
        "billing_type": _coerce_billing_type,
        "start_at": _coerce_datetime,
        "end_at": _coerce_datetime,
        "targeting": _coerce_targeting,
        "frequency_cap": _coerce_frequency_cap,
        "contact": _coerce_contact,
        "timezone": _coerce_timezone,
    }
)


def _coerce(name: str, value: object) -> object:
    return _COERCERS[name](name, value)


def _validate_field(name: str, value: object, products: Mapping[str, AdProduct]) -> None:
    """Content rules of one (already coerced) field; cross-field rules are separate."""
    if name == "title":
        assert isinstance(value, str)
        if not value.strip():
            raise invalid("title must not be blank")
        if len(value) > TITLE_MAX_LENGTH:
            raise invalid(
                f"title is {len(value)} characters long; at most {TITLE_MAX_LENGTH} allowed"
            )
    elif name == "ad_product_id":
        assert isinstance(value, str)
        _validate_product(value, products)
    elif name == "budget":
        assert isinstance(value, Money)
        _check_money("budget", value)
    elif name == "targeting":
        assert isinstance(value, Targeting)
        for part in ("categories", "groups"):
            if any(not item.strip() for item in getattr(value, part)):
                raise invalid(f"targeting.{part} must not contain blank ids")
    elif name == "frequency_cap":
        if value is not None:
            assert isinstance(value, FrequencyCap)
            if (
                not isinstance(value.impressions, int)
                or isinstance(value.impressions, bool)
                or value.impressions <= 0
            ):
                raise invalid(
                    f"frequency_cap.impressions must be a whole number > 0, "
                    f"not {value.impressions!r}"
                )
            if value.per not in FREQUENCY_CAP_PERIODS:
                raise invalid(
                    f"frequency_cap.per must be one of hour, day, week, month, not {value.per!r}"
                )
    elif name == "contact":
        assert isinstance(value, Contact)
        _validate_contact(value)
    elif name == "timezone":
        if value is not None:
            assert isinstance(value, str)
            _validate_timezone(value)
    # billing_type: the coercion is the whole check; start_at/end_at: see _check_period.


def _validate_product(product_id: str, products: Mapping[str, AdProduct]) -> None:
    product = products.get(product_id)
    if product is None:
        raise invalid(f"ad_product_id {product_id!r} is not in the catalog")
    if product.deleted:
        raise invalid(f"ad_product_id {product_id!r} has been deleted from the catalog")


def _check_money(name: str, value: Money) -> None:
    try:
        Money.of(value.amount, value.currency)
    except Refusal as refusal:
        raise invalid(f"{name}: {refusal.message}") from None


def _check_period(start_at: datetime, end_at: datetime) -> None:
    if not end_at > start_at:
        raise invalid(f"end_at {end_at.isoformat()} must be after start_at {start_at.isoformat()}")


def _validate_contact(contact: Contact) -> None:
    if any(c in contact.name for c in "\r\n"):
        raise invalid("contact.name must not contain line breaks")
    email = contact.email
    if not email.strip():
        raise invalid("contact.email must not be blank")
    if any(c in email for c in "\r\n"):
        raise invalid("contact.email must not contain line breaks")
    if any(c.isspace() for c in email):
        raise invalid(f"contact.email {email!r} must not contain spaces")
    local, at, domain = email.partition("@")
    if not at or "@" in domain or not local or not domain:
        raise invalid(f"contact.email {email!r} must be one address of the form name@domain")


def _validate_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise invalid(f"timezone {name!r} is not a known IANA time zone name") from None


# ---------------------------------------------------------------------------------------------
# evolve
# ---------------------------------------------------------------------------------------------


def evolve(campaign: Campaign | None, event: Event) -> Campaign:
    """Apply one event. Every event increments `version` by 1 (creation gives 1).

    Raises `ValueError` when the event does not fit the campaign (a bug or a corrupt log).
    """
    if isinstance(event, CampaignCreated):
        if campaign is not None:
            raise ValueError(f"campaign {campaign.id} already exists")
        return replace(event.campaign, version=1)
    if campaign is None:
        raise ValueError(f"{type(event).__name__} for a campaign that does not exist")
    if event.campaign_id != campaign.id:
        raise ValueError(f"event for campaign {event.campaign_id} applied to {campaign.id}")
    version = campaign.version + 1
    match event:
        case CampaignUpdated():
            bad = set(event.changes) - set(EDITABLE_FIELDS)
            if bad:
                raise ValueError(f"fields {sorted(bad)} cannot be updated")
            return replace(campaign, version=version, **event.changes)  # type: ignore[arg-type]
        case CampaignStatusChanged():
            if event.from_status is not campaign.status:
                raise ValueError(
                    f"campaign {campaign.id} is {campaign.status.value}, "
                    f"event expects {event.from_status.value}"
                )
            to = event.to_status
            updated = replace(
                campaign,
                status=to,
                version=version,
                paused_from=event.from_status if to is Status.PAUSED else None,
            )
            if to is Status.REJECTED:
                updated = replace(updated, rejection_reason=event.reason)
            elif to is Status.SUBMITTED:
                updated = replace(updated, rejection_reason=None)
            elif to is Status.CANCELLED:
                updated = replace(updated, cancel_reason=event.reason, penalty=event.penalty)
            return updated
        case _:  # pragma: no cover - exhaustive
            assert_never(event)


def apply_all(campaign: Campaign | None, events: Iterable[Event]) -> Campaign:
    """Fold `events` over `campaign`. Needs at least one event when `campaign` is None."""
    result = campaign
    for event in events:
        result = evolve(result, event)
    if result is None:
        raise ValueError("no campaign: nothing was created")
    return result


# ---------------------------------------------------------------------------------------------
# The README's state diagram, rendered from TRANSITIONS
# ---------------------------------------------------------------------------------------------


def state_diagram_mermaid() -> str:
    lines = ["stateDiagram-v2", "    [*] --> DRAFT: create (advertiser, publisher)"]
    for t in TRANSITIONS.values():
        label = f"{t.trigger.value} ({_roles_text(t.roles)}) {t.rule}"
        if t.target is None:
            # "previous status": one edge per status a campaign can be paused from (a
            # campaign paused while BOOKED resumes to LIVE once its start has passed).
            for previous in (s for s in Status if s in _PAUSABLE):
                lines.append(f"    {t.source.value} --> {previous.value}: {label}")
        else:
            lines.append(f"    {t.source.value} --> {t.target.value}: {label}")
    for status in Status:
        if status in TERMINAL:
            lines.append(f"    {status.value} --> [*]")
    return "\n".join(lines) + "\n"
