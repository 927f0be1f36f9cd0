"""Serving (spec §4): may this campaign's ads be delivered right now, and why not?

A campaign **serves** when all hold: its status is LIVE; at least one creative is APPROVED (not
paused, not deleted); no hold is set; and, for a card campaign, its charge has succeeded
(spec §5). The answer is a `Verdict`: `serving`, every hold sorted by priority, the display
status, and a human list of reasons ("why is my ad not showing?").

Holds are a set of reasons. `no_approved_creatives` is derived from the creatives on every
verdict and never stored; the others are stored by the service (as a `frozenset[Hold]`) and
changed only through `hold_changes` / `evolve_holds`, driven by the one table `HOLD_RULES`
(which message sets or clears which hold, and who may send it).

`DISPLAY_PRIORITY` is the ONE priority table: hold order, and the display status of an
approved campaign (BOOKED or LIVE); see its comment for the rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal, TypeAlias
from uuid import UUID

from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.model import (
    TERMINAL,
    Actor,
    BillingType,
    Campaign,
    Creative,
    Role,
    Status,
)
from campaign_worker.domain.permissions import check, permission

__all__ = [
    "AWAITING_CHARGE",
    "DISPLAY_PRIORITY",
    "HOLD_PRIORITY",
    "HOLD_RULES",
    "STATUS_DISPLAY",
    "STORED_HOLDS",
    "DisplayRow",
    "Hold",
    "HoldRule",
    "HoldSignal",
    "HoldsChanged",
    "Verdict",
    "buyable_signal",
    "display_status",
    "evolve_holds",
    "hold_changes",
    "landing_page_signal",
    "serving_verdict",
    "sort_holds",
    "verdict_changed",
]


class Hold(StrEnum):
    """Why a campaign may not serve (contract: the `holds` list of `campaign.serving_changed`)."""

    NO_APPROVED_CREATIVES = "no_approved_creatives"  # derived, never stored
    OUT_OF_BUDGET = "out_of_budget"
    BILLING_ERROR = "billing_error"
    PRODUCT_NOT_BUYABLE = "product_not_buyable"
    LANDING_PAGE_UNAVAILABLE = "landing_page_unavailable"
    SUSPENDED = "suspended"
    LOW_RELEVANCE = "low_relevance"


# Holds the service stores and changes through HOLD_RULES.
STORED_HOLDS: frozenset[Hold] = frozenset(Hold) - {Hold.NO_APPROVED_CREATIVES}

# Not a hold: a card campaign whose charge has not succeeded yet (spec §4 "Activating").
AWAITING_CHARGE: Final = "awaiting_charge"
Reason: TypeAlias = Hold | Literal["awaiting_charge"]

# ---------------------------------------------------------------------------------------------
# Display status: the one priority table
# ---------------------------------------------------------------------------------------------

# The display status of a campaign that is not approved-and-running is its status's name.
STATUS_DISPLAY: Mapping[Status, str] = MappingProxyType(
    {
        Status.DRAFT: "Draft",
        Status.SUBMITTED: "Pending",
        Status.BOOKED: "Ready",
        Status.LIVE: "Running",
        Status.PAUSED: "Paused",
        Status.REJECTED: "Rejected",
        Status.CLOSED: "Ended",
        Status.CANCELLED: "Terminated",
    }
)


@dataclass(frozen=True)
class DisplayRow:
    reason: Reason
    display: str
    statuses: frozenset[Status]  # campaign statuses in which this reason names the display
    description: str  # for the "why is it not serving" view


_APPROVED = frozenset({Status.BOOKED, Status.LIVE})
_HELD = frozenset({Status.BOOKED, Status.LIVE, Status.PAUSED})
_LIVE = frozenset({Status.LIVE})

# Highest priority first. Holds in a verdict are listed in this order.
#
# This is the one display-status table: events, emails and `campaign show` all take the
# display status from `display_status` below (through the serving verdict).
#
# The display status of a BOOKED, LIVE or PAUSED campaign is the `display` of the first row
# whose reason is present and whose `statuses` contain the campaign's status; when no row
# applies it is its STATUS_DISPLAY name ("Ready", "Running", "Paused"). Every other status
# shows its STATUS_DISPLAY name whatever the holds (the holds are still listed).
#
# Why this order: first what only the publisher can lift (a policy suspension), then money
# (a failed or unconfirmed card charge; a spent budget, which never clears), then facts outside
# the campaign (catalog, landing page), then relevance, then the advertiser's creatives.
# A stored hold names the display of a LIVE campaign that does not serve and of a BOOKED or
# PAUSED campaign that has it (spec §4: AMS shows "ASIN not buyable" for a campaign paused for
# that reason, whatever its schedule). An unconfirmed card charge ("Activating") names the
# display of an approved campaign waiting to run or running (BOOKED, LIVE). The derived
# `no_approved_creatives` names it only while LIVE: before the start a campaign without an
# approved creative is still "Ready" to be given one. The display vocabulary has no word for
# low relevance; since only the publisher's reinstatement clears it, it shows as "Suspended"
# (the hold list says which).
DISPLAY_PRIORITY: tuple[DisplayRow, ...] = (
    DisplayRow(Hold.SUSPENDED, "Suspended", _HELD, "suspended by the publisher"),
    DisplayRow(Hold.BILLING_ERROR, "Billing error", _HELD, "the card charge failed"),
    DisplayRow(AWAITING_CHARGE, "Activating", _APPROVED, "the card charge is not confirmed yet"),
    DisplayRow(Hold.OUT_OF_BUDGET, "Out of budget", _HELD, "the budget is spent"),
    DisplayRow(
        Hold.PRODUCT_NOT_BUYABLE,
        "ASIN not buyable",
        _HELD,
        "the advertised product cannot be bought",
    ),
    DisplayRow(
        Hold.LANDING_PAGE_UNAVAILABLE,
        "Landing page not available",
        _HELD,
        "the landing page is down",
    ),
    DisplayRow(
        Hold.LOW_RELEVANCE, "Suspended", _HELD, "click-through rate below the relevance threshold"
    ),
    DisplayRow(
        Hold.NO_APPROVED_CREATIVES,
        "Ad groups not running",
        _LIVE,
        "no approved creative (none approved, or all paused or deleted)",
    ),
)

HOLD_PRIORITY: tuple[Hold, ...] = tuple(
    row.reason for row in DISPLAY_PRIORITY if isinstance(row.reason, Hold)
)
if set(HOLD_PRIORITY) != set(Hold) or len(HOLD_PRIORITY) != len(Hold):  # pragma: no cover
    raise ValueError("DISPLAY_PRIORITY must rank every hold exactly once")

_RANK: Mapping[Hold, int] = MappingProxyType({hold: i for i, hold in enumerate(HOLD_PRIORITY)})


def sort_holds(holds: Iterable[Hold]) -> tuple[Hold, ...]:
    """`holds` without duplicates, highest priority first."""
    return tuple(sorted(set(holds), key=_RANK.__getitem__))


# ---------------------------------------------------------------------------------------------
# The verdict
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    serving: bool
    holds: tuple[Hold, ...]  # highest priority first; includes the derived hold
    display_status: str
    # Human reasons why it does not serve, most important first (empty when serving).
    reasons: tuple[str, ...] = ()


def serving_verdict(
    campaign: Campaign,
    creatives: Iterable[Creative],
    holds: frozenset[Hold],
    charge_confirmed: bool,
) -> Verdict:
    """The serving verdict of `campaign` (spec §4).

    `creatives`: the campaign's creatives (tombstones may be included). `holds`: the stored
    holds (a `no_approved_creatives` in it is ignored: that hold is always derived here).
    `charge_confirmed`: the card charge for the current submission has succeeded (ignored for
    manual billing).
    """
    all_holds = set(holds) - {Hold.NO_APPROVED_CREATIVES}
    deliverable = False
    for creative in creatives:
        if creative.campaign_id != campaign.id:
            raise ValueError(f"creative {creative.id} does not belong to campaign {campaign.id}")
        deliverable = deliverable or creative.deliverable
    if not deliverable:
        all_holds.add(Hold.NO_APPROVED_CREATIVES)
    sorted_holds = sort_holds(all_holds)
    awaiting = campaign.billing_type is BillingType.CARD and not charge_confirmed
    serving = campaign.status is Status.LIVE and not sorted_holds and not awaiting

    reasons: list[str] = []
    if not serving:
        if campaign.status is not Status.LIVE:
            reasons.append(f"the campaign is {campaign.status.value}, not LIVE")
        present: set[Reason] = set(sorted_holds)
        if awaiting:
            present.add(AWAITING_CHARGE)
        reasons.extend(row.description for row in DISPLAY_PRIORITY if row.reason in present)
    return Verdict(
        serving=serving,
        holds=sorted_holds,
        display_status=display_status(campaign.status, sorted_holds, awaiting_charge=awaiting),
        reasons=tuple(reasons),
    )


def display_status(status: Status, holds: Iterable[Hold], *, awaiting_charge: bool) -> str:
    """The display status by DISPLAY_PRIORITY (see there)."""
    present: set[Reason] = set(holds)
    if awaiting_charge:
        present.add(AWAITING_CHARGE)
    for row in DISPLAY_PRIORITY:
        if row.reason in present and status in row.statuses:
            return row.display
    return STATUS_DISPLAY[status]


def verdict_changed(before: Verdict | None, after: Verdict) -> bool:
    """Whether a `campaign.serving_changed` event is due: the serving flag, the hold set or the
    display status changed (display too, so that e.g. "Activating" -> "Ready" on a confirmed
    charge reaches subscribers). The human reasons alone never trigger one."""
    if before is None:
        return True
    return (before.serving, before.holds, before.display_status) != (
        after.serving,
        after.holds,
        after.display_status,
    )


# ---------------------------------------------------------------------------------------------
# Setting and clearing holds: one table
# ---------------------------------------------------------------------------------------------


class HoldSignal(StrEnum):
    """The messages that set or clear stored holds (spec §4, §5, §7)."""

    SUSPENDED = "suspended"  # review.campaign_suspended (reason)
    REINSTATED = "reinstated"  # review.campaign_reinstated
    LANDING_PAGE_DOWN = "landing_page_down"  # review.landing_page_status available=false
    LANDING_PAGE_UP = "landing_page_up"  # review.landing_page_status available=true
    PRODUCT_NOT_BUYABLE = "product_not_buyable"  # catalog.ad_product_upserted buyable=false
    PRODUCT_BUYABLE = "product_buyable"  # catalog.ad_product_upserted buyable=true
    CHARGE_FAILED = "charge_failed"  # payment.charge_failed
    CHARGE_SUCCEEDED = "charge_succeeded"  # payment.charge_succeeded
    BUDGET_EXHAUSTED = "budget_exhausted"  # billable spend reached the budget (settlement)
    RELEVANCE_LOW = "relevance_low"  # CTR below the threshold (settlement)


@dataclass(frozen=True)
class HoldRule:
    sets: frozenset[Hold]
    clears: frozenset[Hold]
    # who may send it: the row of `permissions.PERMISSIONS` (the inbound type that carries it,
    # or the worker's own action when it derives the signal from a fact)
    action: str
    # A publisher decision (refused on a CLOSED/CANCELLED campaign, `invalid_transition`) rather
    # than a reported fact (ignored there: the holds of a finished campaign are frozen).
    decision: bool = False
    reason_required: bool = False

    @property
    def roles(self) -> frozenset[Role]:
        return permission(self.action).roles


_NONE: frozenset[Hold] = frozenset()


def _one(hold: Hold) -> frozenset[Hold]:
    return frozenset({hold})


# Note: nothing clears `out_of_budget` (the budget is locked after approval; the campaign waits
# for its end time), and `low_relevance` is cleared only by the publisher's reinstatement.
HOLD_RULES: Mapping[HoldSignal, HoldRule] = MappingProxyType(
    {
        HoldSignal.SUSPENDED: HoldRule(
            _one(Hold.SUSPENDED),
            _NONE,
            "review.campaign_suspended",
            decision=True,
            reason_required=True,
        ),
        HoldSignal.REINSTATED: HoldRule(
            _NONE,
            frozenset({Hold.SUSPENDED, Hold.LOW_RELEVANCE}),
            "review.campaign_reinstated",
            decision=True,
        ),
        HoldSignal.LANDING_PAGE_DOWN: HoldRule(
            _one(Hold.LANDING_PAGE_UNAVAILABLE), _NONE, "review.landing_page_status"
        ),
        HoldSignal.LANDING_PAGE_UP: HoldRule(
            _NONE, _one(Hold.LANDING_PAGE_UNAVAILABLE), "review.landing_page_status"
        ),
        HoldSignal.PRODUCT_NOT_BUYABLE: HoldRule(
            _one(Hold.PRODUCT_NOT_BUYABLE), _NONE, "hold.product_buyability"
        ),
        HoldSignal.PRODUCT_BUYABLE: HoldRule(
            _NONE, _one(Hold.PRODUCT_NOT_BUYABLE), "hold.product_buyability"
        ),
        HoldSignal.CHARGE_FAILED: HoldRule(_one(Hold.BILLING_ERROR), _NONE, "hold.billing_error"),
        HoldSignal.CHARGE_SUCCEEDED: HoldRule(
            _NONE, _one(Hold.BILLING_ERROR), "hold.billing_error"
        ),
        HoldSignal.BUDGET_EXHAUSTED: HoldRule(_one(Hold.OUT_OF_BUDGET), _NONE, "hold.budget"),
        HoldSignal.RELEVANCE_LOW: HoldRule(_one(Hold.LOW_RELEVANCE), _NONE, "hold.relevance"),
    }
)


def landing_page_signal(available: bool) -> HoldSignal:
    """`review.landing_page_status` -> its signal."""
    return HoldSignal.LANDING_PAGE_UP if available else HoldSignal.LANDING_PAGE_DOWN


def buyable_signal(buyable: bool) -> HoldSignal:
    """`catalog.ad_product_upserted` -> its signal for each campaign of that product."""
    return HoldSignal.PRODUCT_BUYABLE if buyable else HoldSignal.PRODUCT_NOT_BUYABLE


@dataclass(frozen=True)
class HoldsChanged:
    campaign_id: UUID
    signal: HoldSignal
    added: frozenset[Hold]
    removed: frozenset[Hold]
    reason: str | None = None  # the publisher's reason of a suspension


def hold_changes(
    campaign: Campaign,
    holds: frozenset[Hold],
    signal: HoldSignal,
    actor: Actor,
    reason: str | None = None,
) -> list[HoldsChanged]:
    """What `signal` does to the stored `holds` of `campaign`: one `HoldsChanged`, or nothing
    when the set would not change (signals are idempotent). Raises `Refusal`: `forbidden` for a
    role the table does not allow; `invalid_transition` for a publisher decision on a
    CLOSED/CANCELLED campaign (a reported fact is ignored there instead); `validation_failed`
    for a suspension without a reason.
    """
    rule = HOLD_RULES[signal]
    check(rule.action, actor)
    if campaign.status in TERMINAL:
        if rule.decision:
            raise Refusal(
                RefusalCode.INVALID_TRANSITION,
                f"campaign {campaign.id} is {campaign.status.value}: it accepts nothing "
                f"(cannot apply {signal.value})",
            )
        return []
    clean_reason: str | None = None
    if rule.reason_required:
        if not isinstance(reason, str) or not reason.strip():
            raise Refusal(RefusalCode.VALIDATION_FAILED, f"reason is required for {signal.value}")
        clean_reason = reason.strip()
    stored = holds & STORED_HOLDS
    added = rule.sets - stored
    removed = rule.clears & stored
    if not added and not removed:
        return []
    return [HoldsChanged(campaign.id, signal, added, removed, clean_reason)]


def evolve_holds(holds: frozenset[Hold], event: HoldsChanged) -> frozenset[Hold]:
    """Apply one `HoldsChanged` to the stored holds."""
    if Hold.NO_APPROVED_CREATIVES in event.added:
        raise ValueError("no_approved_creatives is derived and never stored")
    return frozenset((holds - event.removed) | event.added)
