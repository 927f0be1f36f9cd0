"""Creatives (spec §3): the action table as data, `decide_creative` and `evolve_creative`.

A creative belongs to one campaign. Its status is `UNDER_REVIEW`, `APPROVED`, `REJECTED` or
`PAUSED`; deletion is permanent: the creative becomes a tombstone (`deleted=True`, kept for
audit with its last status and content) that accepts nothing, and its id can never be
registered again.

- `CREATIVE_ACTIONS` is the one action table: for each action, the creative statuses it is
  allowed from, the status it leads to, who may do it, and the refusal code when the campaign
  is CLOSED/CANCELLED. Whatever is not in it is refused.
- `decide_creative(campaign, creative, command, actor, now)` checks a command and returns the
  events it causes, or raises `Refusal`. It never mutates anything and reads no clock.
- `evolve_creative(creative, event)` applies one event; `apply_creative_events` folds many.

Events per accepted command: register -> `CreativeRegistered`; name-only edit ->
`CreativeUpdated`; content edit -> `CreativeUpdated`, then `CreativeStatusChanged(-> UNDER_REVIEW)`
unless the creative was already under review; delete -> `CreativeDeleted`; pause, resume,
approve, reject -> `CreativeStatusChanged`.

Order of checks in `decide_creative` (the first failing one names the refusal):
1. the campaign does not exist -> `not_found`;
2. the actor's role may never send this command, or an advertiser acts on another advertiser's
   campaign (ownership is the campaign's `advertiser_id`) -> `forbidden`, as
   `permissions.PERMISSIONS` says (the `roles` of the action table are read from it);
3. create for an id that exists, deleted or not -> `already_exists`; any other command for an id
   that does not exist -> `not_found`;
4. the creative is deleted -> `invalid_transition` (a tombstone accepts nothing);
5. the campaign is CLOSED/CANCELLED -> the action's code in the table (`not_editable` for
   register/edit/delete, `invalid_transition` for pause/resume/approve/reject);
6. the creative's status is not one the action is allowed from -> `invalid_transition`;
7. field validation -> `validation_failed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TypeAlias, assert_never
from urllib.parse import urlsplit
from uuid import UUID

from campaign_worker.domain.checks import aware_utc, coerce_str, invalid
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
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.model import (
    TERMINAL,
    Actor,
    AdProduct,
    Campaign,
    Creative,
    CreativeContent,
    CreativeStatus,
    Role,
)
from campaign_worker.domain.permissions import check, permission

__all__ = [
    "CONTENT_FIELDS",
    "CREATIVE_ACTIONS",
    "CREATIVE_FIELDS",
    "NAME_MAX_LENGTH",
    "CreativeAction",
    "CreativeDeleted",
    "CreativeEvent",
    "CreativeRegistered",
    "CreativeRule",
    "CreativeStatusChanged",
    "CreativeUpdated",
    "action_of",
    "apply_creative_events",
    "decide_creative",
    "evolve_creative",
]

NAME_MAX_LENGTH = 200

# ---------------------------------------------------------------------------------------------
# What an edit may change (the creative itself is in `model.py`)
# ---------------------------------------------------------------------------------------------

# Fields an UpdateCreative may carry. Changing any of CONTENT_FIELDS sends the creative back to
# review; changing only the name does not.
CREATIVE_FIELDS: tuple[str, ...] = ("name", "ad_unit_id", "content")
CONTENT_FIELDS: frozenset[str] = frozenset({"ad_unit_id", "content"})
_CONTENT_KEYS: tuple[str, ...] = ("file_url", "destination_url", "text")

# ---------------------------------------------------------------------------------------------
# Events (past tense); the commands are in `commands.py`
# ---------------------------------------------------------------------------------------------


class CreativeAction(StrEnum):
    """The rows of spec §3. An `UpdateCreative` is EDIT_CONTENT when it really changes the ad
    unit or the content, else EDIT_NAME."""

    REGISTER = "register"
    EDIT_CONTENT = "edit_content"
    EDIT_NAME = "edit_name"
    DELETE = "delete"
    PAUSE = "pause"
    RESUME = "resume"
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class CreativeRegistered:
    creative: Creative


@dataclass(frozen=True)
class CreativeUpdated:
    """Only the fields whose value really changed, with their new values (read-only)."""

    campaign_id: UUID
    creative_id: str
    changes: Mapping[str, object]

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))

    @property
    def content_changed(self) -> bool:
        return bool(CONTENT_FIELDS & set(self.changes))


@dataclass(frozen=True)
class CreativeStatusChanged:
    """`action` says why (approve, reject, pause, resume, edit_content); `reason` is the
    reviewer's reason of a rejection, else None."""

    campaign_id: UUID
    creative_id: str
    from_status: CreativeStatus
    to_status: CreativeStatus
    action: CreativeAction
    reason: str | None = None


@dataclass(frozen=True)
class CreativeDeleted:
    campaign_id: UUID
    creative_id: str
    from_status: CreativeStatus
    deleted_at: datetime


CreativeEvent: TypeAlias = (
    CreativeRegistered | CreativeUpdated | CreativeStatusChanged | CreativeDeleted
)

# ---------------------------------------------------------------------------------------------
# The action table (spec §3)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreativeRule:
    action: CreativeAction
    # Statuses of an existing, not deleted creative the action is allowed from (REGISTER: none,
    # it needs the id to be unused).
    sources: frozenset[CreativeStatus]
    # Status afterwards; None: unchanged (edit name) or gone (delete).
    target: CreativeStatus | None
    roles: frozenset[Role]
    # The code when the campaign is CLOSED or CANCELLED (it accepts nothing then).
    on_closed_campaign: RefusalCode


_ANY_STATUS = frozenset(CreativeStatus)
_NE = RefusalCode.NOT_EDITABLE
_INV = RefusalCode.INVALID_TRANSITION
_S = CreativeStatus
_A = CreativeAction


def _rules(*rules: CreativeRule) -> Mapping[CreativeAction, CreativeRule]:
    table = {rule.action: rule for rule in rules}
    if len(table) != len(rules) or set(table) != set(CreativeAction):  # pragma: no cover
        raise ValueError("CREATIVE_ACTIONS must have exactly one row per action")
    return MappingProxyType(table)


def _who(action: str) -> frozenset[Role]:
    """Who may do it: the row of its inbound type in `permissions.PERMISSIONS`."""
    return permission(action).roles


CREATIVE_ACTIONS: Mapping[CreativeAction, CreativeRule] = _rules(
    CreativeRule(_A.REGISTER, frozenset(), _S.UNDER_REVIEW, _who("creative.create"), _NE),
    CreativeRule(_A.EDIT_CONTENT, _ANY_STATUS, _S.UNDER_REVIEW, _who("creative.update"), _NE),
    CreativeRule(_A.EDIT_NAME, _ANY_STATUS, None, _who("creative.update"), _NE),
    CreativeRule(_A.DELETE, _ANY_STATUS, None, _who("creative.delete"), _NE),
    CreativeRule(_A.PAUSE, frozenset({_S.APPROVED}), _S.PAUSED, _who("creative.pause"), _INV),
    CreativeRule(_A.RESUME, frozenset({_S.PAUSED}), _S.APPROVED, _who("creative.resume"), _INV),
    CreativeRule(
        _A.APPROVE,
        frozenset({_S.UNDER_REVIEW}),
        _S.APPROVED,
        _who("review.creative_approved"),
        _INV,
    ),
    CreativeRule(
        _A.REJECT,
        frozenset({_S.UNDER_REVIEW}),
        _S.REJECTED,
        _who("review.creative_rejected"),
        _INV,
    ),
)

# The action each command type stands for (an update is EDIT_CONTENT or EDIT_NAME; both rows
# have the same roles and sources, so the role check can use EDIT_NAME before the diff is known).
_COMMAND_ACTION: Mapping[type, CreativeAction] = MappingProxyType(
    {
        CreateCreative: _A.REGISTER,
        UpdateCreative: _A.EDIT_NAME,
        DeleteCreative: _A.DELETE,
        PauseCreative: _A.PAUSE,
        ResumeCreative: _A.RESUME,
        ApproveCreative: _A.APPROVE,
        RejectCreative: _A.REJECT,
    }
)


# The inbound message type of each command (its row of `permissions.PERMISSIONS`).
ACTIONS: Mapping[type, str] = MappingProxyType(
    {
        CreateCreative: "creative.create",
        UpdateCreative: "creative.update",
        DeleteCreative: "creative.delete",
        PauseCreative: "creative.pause",
        ResumeCreative: "creative.resume",
        ApproveCreative: "review.creative_approved",
        RejectCreative: "review.creative_rejected",
    }
)


def action_of(command: CreativeCommand, creative: Creative | None = None) -> CreativeAction:
    """The row of CREATIVE_ACTIONS a command uses. An update is EDIT_CONTENT when it really
    changes the ad unit or the content of `creative`, else EDIT_NAME. Raises `Refusal`
    (`validation_failed`) for an update whose values have the wrong types."""
    if isinstance(command, UpdateCreative) and creative is not None:
        diff = _update_diff(creative, command.changes)
        return _A.EDIT_CONTENT if CONTENT_FIELDS & set(diff) else _A.EDIT_NAME
    return _COMMAND_ACTION[type(command)]


# ---------------------------------------------------------------------------------------------
# decide
# ---------------------------------------------------------------------------------------------


def decide_creative(
    campaign: Campaign | None,
    creative: Creative | None,
    command: CreativeCommand,
    actor: Actor,
    now: datetime,
    product: AdProduct | None = None,
) -> list[CreativeEvent]:
    """The events `command` causes on `creative` (of `campaign`), or a `Refusal`.

    `product` is the campaign's ad product: a creative's ad unit must be one of its units
    (checked at registration and on a content edit; not checked when it is not given).

    `creative` is the stored creative with the command's id (a tombstone included), or None
    when there is none. `now` must be timezone-aware (it stamps the tombstone). Raises
    `ValueError` for caller bugs: a naive `now`, a command for another campaign, a creative that
    is not the command's.
    """
    now = aware_utc(now, "now")
    if campaign is None:
        raise Refusal(RefusalCode.NOT_FOUND, f"campaign {command.campaign_id} does not exist")
    if command.campaign_id != campaign.id:
        raise ValueError(f"command for campaign {command.campaign_id} applied to {campaign.id}")
    if creative is not None and (
        creative.id != command.creative_id or creative.campaign_id != campaign.id
    ):
        raise ValueError(
            f"creative {creative.id} of campaign {creative.campaign_id} given for "
            f"command on creative {command.creative_id} of campaign {campaign.id}"
        )

    # 2. role and ownership
    rule = CREATIVE_ACTIONS[_COMMAND_ACTION[type(command)]]
    check(ACTIONS[type(command)], actor, campaign.advertiser_id, f"campaign {campaign.id}")

    # 3. existence, 4. tombstone
    if isinstance(command, CreateCreative):
        if creative is not None:
            gone = " (it was deleted; a deleted creative's id is never reused)"
            raise Refusal(
                RefusalCode.ALREADY_EXISTS,
                f"creative {command.creative_id} already exists"
                + (gone if creative.deleted else ""),
            )
    elif creative is None:
        raise Refusal(
            RefusalCode.NOT_FOUND,
            f"creative {command.creative_id} does not exist in campaign {campaign.id}",
        )
    elif creative.deleted:
        raise Refusal(
            RefusalCode.INVALID_TRANSITION,
            f"creative {creative.id} was deleted: deletion is permanent, it accepts nothing",
        )

    match command:
        case CreateCreative():
            _check_campaign_open(campaign, rule)
            registered = _register(command, campaign)
            _check_unit(registered.creative.ad_unit_id, product)
            return [registered]
        case UpdateCreative():
            assert creative is not None
            events = _update(campaign, creative, command)
            _check_unit(creative.ad_unit_id, product, events)
            return events
        case DeleteCreative():
            assert creative is not None
            _check_campaign_open(campaign, rule)
            _check_source(creative, rule)
            return [CreativeDeleted(campaign.id, creative.id, creative.status, now)]
        case PauseCreative() | ResumeCreative() | ApproveCreative() | RejectCreative():
            assert creative is not None
            _check_campaign_open(campaign, rule)
            _check_source(creative, rule)
            reason: str | None = None
            if isinstance(command, RejectCreative):
                if not isinstance(command.reason, str) or not command.reason.strip():
                    raise invalid("reason is required to reject a creative")
                reason = command.reason.strip()
            assert rule.target is not None
            target = rule.target
            if rule.action is _A.APPROVE and creative.paused:
                target = CreativeStatus.PAUSED  # the advertiser's pause survives the review
            return [
                CreativeStatusChanged(
                    campaign.id, creative.id, creative.status, target, rule.action, reason
                )
            ]
        case _:  # pragma: no cover - exhaustive
            assert_never(command)


def _check_campaign_open(campaign: Campaign, rule: CreativeRule) -> None:
    if campaign.status in TERMINAL:
        raise Refusal(
            rule.on_closed_campaign,
            f"campaign {campaign.id} is {campaign.status.value}: its creatives accept nothing "
            f"(cannot {rule.action.value})",
        )


def _check_source(creative: Creative, rule: CreativeRule) -> None:
    if creative.status not in rule.sources:
        allowed = ", ".join(s.value for s in CreativeStatus if s in rule.sources)
        raise Refusal(
            RefusalCode.INVALID_TRANSITION,
            f"cannot {rule.action.value} creative {creative.id}: it is "
            f"{creative.status.value} (only from {allowed})",
        )


def _check_unit(unit: str, product: AdProduct | None, events: Iterable[CreativeEvent] = ()) -> None:
    """The creative's ad unit must be a unit of its product: at registration (no `events`)
    and after a content edit (`events` of an update; a name-only edit is not checked)."""
    edits = [ev for ev in events if isinstance(ev, CreativeUpdated)]
    if edits and not any(CONTENT_FIELDS & set(ev.changes) for ev in edits):
        return
    for ev in edits:
        if "ad_unit_id" in ev.changes:
            unit = str(ev.changes["ad_unit_id"])
    if product is not None and unit not in product.unit_ids:
        units = ", ".join(product.unit_ids) or "none"
        raise invalid(
            f"ad_unit_id {unit!r} is not a unit of ad product {product.id!r} (its units: {units})"
        )


def _register(command: CreateCreative, campaign: Campaign) -> CreativeRegistered:
    creative_id = coerce_str("creative_id", command.creative_id)
    if not creative_id.strip():
        raise invalid("creative_id must not be blank")
    name = _valid_name(command.name)
    ad_unit_id = _valid_ad_unit(command.ad_unit_id)
    content = _valid_content(command.content)
    return CreativeRegistered(
        Creative(
            id=creative_id,
            campaign_id=campaign.id,
            name=name,
            ad_unit_id=ad_unit_id,
            content=content,
            status=CreativeStatus.UNDER_REVIEW,
            version=1,
        )
    )


def _update(campaign: Campaign, creative: Creative, command: UpdateCreative) -> list[CreativeEvent]:
    # Both edit rows share sources and on_closed_campaign; the diff only picks the target.
    _check_campaign_open(campaign, CREATIVE_ACTIONS[_A.EDIT_NAME])
    unknown = sorted(set(command.changes) - set(CREATIVE_FIELDS))
    if unknown:
        raise invalid(
            f"unknown creative field(s) {', '.join(unknown)}; "
            f"editable: {', '.join(CREATIVE_FIELDS)}"
        )
    diff = _update_diff(creative, command.changes)
    for name, value in diff.items():
        _validate_field(name, value)
    action = _A.EDIT_CONTENT if CONTENT_FIELDS & set(diff) else _A.EDIT_NAME
    rule = CREATIVE_ACTIONS[action]
    _check_source(creative, rule)
    events: list[CreativeEvent] = [CreativeUpdated(campaign.id, creative.id, diff)]
    if rule.target is not None and creative.status is not rule.target:
        events.append(
            CreativeStatusChanged(campaign.id, creative.id, creative.status, rule.target, action)
        )
    return events


# -- field coercion and validation --------------------------------------------------------------


def _update_diff(creative: Creative, changes: Mapping[str, object]) -> dict[str, object]:
    """New values (type-checked) of the known fields that really change, in CREATIVE_FIELDS
    order. A content mapping is merged into the current content first."""
    values: dict[str, object] = {}
    for name in CREATIVE_FIELDS:
        if name not in changes:
            continue
        value = changes[name]
        if name == "content":
            value = _merged_content(creative.content, value)
        else:
            value = coerce_str(name, value)
        if value != getattr(creative, name):
            values[name] = value
    return values


def _merged_content(current: CreativeContent, value: object) -> CreativeContent:
    if isinstance(value, CreativeContent):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in set(value) - set(_CONTENT_KEYS))
        if unknown:
            raise invalid(
                f"unknown content field(s) {', '.join(unknown)}; "
                f"content has {', '.join(_CONTENT_KEYS)}"
            )
        parts = {key: getattr(current, key) for key in _CONTENT_KEYS}
        for key in _CONTENT_KEYS:
            if key in value:
                parts[key] = coerce_str(f"content.{key}", value[key])
        return CreativeContent(**parts)
    raise invalid(f"content must be an object, not {type(value).__name__}")


def _validate_field(name: str, value: object) -> None:
    if name == "name":
        _valid_name(value)
    elif name == "ad_unit_id":
        _valid_ad_unit(value)
    else:
        _valid_content(value)


def _valid_name(value: object) -> str:
    name = coerce_str("name", value)
    if not name.strip():
        raise invalid("name must not be blank")
    if any(c in name for c in "\r\n"):
        raise invalid("name must not contain line breaks")
    if len(name) > NAME_MAX_LENGTH:
        raise invalid(f"name is {len(name)} characters long; at most {NAME_MAX_LENGTH} allowed")
    return name


def _valid_ad_unit(value: object) -> str:
    unit = coerce_str("ad_unit_id", value)
    if not unit.strip():
        raise invalid("ad_unit_id must not be blank")
    return unit


def _valid_content(value: object) -> CreativeContent:
    if not isinstance(value, CreativeContent):
        raise invalid(f"content must be creative content, not {type(value).__name__}")
    for key in _CONTENT_KEYS:
        coerce_str(f"content.{key}", getattr(value, key))
    _valid_url("content.file_url", value.file_url, schemes=None)
    _valid_url("content.destination_url", value.destination_url, schemes=("http", "https"))
    return value


def _valid_url(name: str, url: str, *, schemes: tuple[str, ...] | None) -> None:
    if not url.strip():
        raise invalid(f"{name} must not be blank")
    if any(c.isspace() for c in url):
        raise invalid(f"{name} {url!r} must not contain spaces or line breaks")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise invalid(f"{name} {url!r} is not a URL") from None
    if not parts.scheme or not (parts.netloc or parts.path):
        raise invalid(f"{name} {url!r} must be an absolute URL")
    if schemes is not None and (parts.scheme.lower() not in schemes or not parts.netloc):
        raise invalid(f"{name} {url!r} must be an http(s) URL with a host")


# ---------------------------------------------------------------------------------------------
# evolve
# ---------------------------------------------------------------------------------------------


def evolve_creative(creative: Creative | None, event: CreativeEvent) -> Creative:
    """Apply one event. Every event increments `version` by 1 (registration gives 1).

    Raises `ValueError` when the event does not fit the creative (a bug or a corrupt log).
    """
    if isinstance(event, CreativeRegistered):
        if creative is not None:
            raise ValueError(f"creative {creative.id} already exists")
        return replace(event.creative, version=1)
    if creative is None:
        raise ValueError(f"{type(event).__name__} for a creative that does not exist")
    if event.creative_id != creative.id or event.campaign_id != creative.campaign_id:
        raise ValueError(f"event for creative {event.creative_id} applied to {creative.id}")
    if creative.deleted:
        raise ValueError(f"creative {creative.id} is deleted: it accepts no events")
    version = creative.version + 1
    match event:
        case CreativeUpdated():
            bad = set(event.changes) - set(CREATIVE_FIELDS)
            if bad:
                raise ValueError(f"creative fields {sorted(bad)} cannot be updated")
            return replace(creative, version=version, **event.changes)  # type: ignore[arg-type]
        case CreativeStatusChanged():
            if event.from_status is not creative.status:
                raise ValueError(
                    f"creative {creative.id} is {creative.status.value}, "
                    f"event expects {event.from_status.value}"
                )
            rejected = event.to_status is CreativeStatus.REJECTED
            paused = creative.paused
            if event.action is _A.PAUSE:
                paused = True
            elif event.action is _A.RESUME:
                paused = False
            return replace(
                creative,
                status=event.to_status,
                rejection_reason=event.reason if rejected else None,
                paused=paused,
                version=version,
            )
        case CreativeDeleted():
            return replace(creative, deleted=True, deleted_at=event.deleted_at, version=version)
        case _:  # pragma: no cover - exhaustive
            assert_never(event)


def apply_creative_events(creative: Creative | None, events: Iterable[CreativeEvent]) -> Creative:
    """Fold `events` over `creative`. Needs at least one event when `creative` is None."""
    result = creative
    for event in events:
        result = evolve_creative(result, event)
    if result is None:
        raise ValueError("no creative: nothing was registered")
    return result
