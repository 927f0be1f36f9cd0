"""The campaign aggregate and its vocabulary (spec §1, §2). Data only: rules live in
`lifecycle.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from campaign_worker.domain.money import Money


class Status(StrEnum):
    """Primary campaign status (spec §1)."""

    DRAFT = "DRAFT"
    SUBMITTED = "SUBMITTED"
    BOOKED = "BOOKED"
    LIVE = "LIVE"
    PAUSED = "PAUSED"
    REJECTED = "REJECTED"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"


TERMINAL: frozenset[Status] = frozenset({Status.CLOSED, Status.CANCELLED})


class Trigger(StrEnum):
    """What moves a campaign along an edge of the transition table.

    Defined here (not in `lifecycle`) so that `events` can use it without an import cycle;
    `campaign_worker.domain.lifecycle.Trigger` is the same class.
    """

    SUBMIT = "submit"
    RESUBMIT = "resubmit"  # the submit command applied to REJECTED (T4)
    APPROVE = "approve"
    REJECT = "reject"
    START = "start"
    END = "end"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"  # T10 and T11
    STOP = "stop"  # the system ends a campaign early: low relevance (spec §7, T13)


class Role(StrEnum):
    ADVERTISER = "advertiser"
    PUBLISHER = "publisher"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    role: Role
    id: str | None = None


class BillingType(StrEnum):
    CARD = "card"  # prepaid
    MANUAL = "manual"  # postpaid


FREQUENCY_CAP_PERIODS: frozenset[str] = frozenset({"hour", "day", "week", "month"})


@dataclass(frozen=True)
class Targeting:
    categories: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class FrequencyCap:
    impressions: int
    per: str  # one of FREQUENCY_CAP_PERIODS


@dataclass(frozen=True)
class Contact:
    name: str
    email: str


@dataclass(frozen=True)
class AdProduct:
    """A catalog entry (`catalog.ad_product_upserted`), as far as the lifecycle needs it."""

    id: str
    name: str
    unit_ids: tuple[str, ...]
    unit_set_valid: bool
    buyable: bool
    deleted: bool


@dataclass(frozen=True)
class Campaign:
    """The aggregate. All datetimes are timezone-aware UTC; `version` counts applied events."""

    id: UUID
    advertiser_id: str
    title: str
    ad_product_id: str
    budget: Money
    billing_type: BillingType
    start_at: datetime
    end_at: datetime
    targeting: Targeting
    frequency_cap: FrequencyCap | None
    contact: Contact
    timezone: str | None
    status: Status = Status.DRAFT
    paused_from: Status | None = None  # set exactly while PAUSED: BOOKED or LIVE
    version: int = 1
    rejection_reason: str | None = None  # set while REJECTED (last review's reason)
    cancel_reason: str | None = None
    penalty: Money | None = None  # publisher-set fee on T11


# Fields an UpdateCampaign may carry (besides "advertiser_id", which can never change).
EDITABLE_FIELDS: tuple[str, ...] = (
    "title",
    "ad_product_id",
    "budget",
    "billing_type",
    "start_at",
    "end_at",
    "targeting",
    "frequency_cap",
    "contact",
    "timezone",
)

# Fields the publisher may not change once a campaign is approved (spec §2).
LOCKED_AFTER_APPROVAL: frozenset[str] = frozenset({"ad_product_id", "budget", "billing_type"})


class CategoryState(StrEnum):
    """A targeting category or group as the catalog last described it."""

    ACTIVE = "active"
    DEACTIVATED = "deactivated"
    DELETED = "deleted"


# A campaign's creatives (spec §3); their rules live in `creatives.py`.


class CreativeStatus(StrEnum):
    UNDER_REVIEW = "UNDER_REVIEW"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    PAUSED = "PAUSED"


@dataclass(frozen=True)
class CreativeContent:
    file_url: str
    destination_url: str
    text: str


@dataclass(frozen=True)
class Creative:
    """One creative of a campaign. `deleted` makes it a tombstone: the other fields keep their
    last values for audit, and nothing can change it any more. `version` counts applied events
    (registration gives 1)."""

    id: str
    campaign_id: UUID
    name: str
    ad_unit_id: str
    content: CreativeContent
    status: CreativeStatus = CreativeStatus.UNDER_REVIEW
    rejection_reason: str | None = None  # set while REJECTED (last review's reason)
    deleted: bool = False
    deleted_at: datetime | None = None
    version: int = 1
    # the advertiser paused it: kept through a content edit and its review, so that a
    # re-approved creative comes back PAUSED; only a resume clears it
    paused: bool = False

    @property
    def deliverable(self) -> bool:
        """True when this creative may be delivered (APPROVED and not deleted)."""
        return self.status is CreativeStatus.APPROVED and not self.deleted
