"""Commands: imperative, one handler each, refused loudly (a `Refusal`) when they break a rule.

This module is the one home of every command the worker accepts: the campaign lifecycle,
creatives, holds, duplication, billing facts and catalog facts. Values are already
domain-typed (the entrypoints parse the wire format). The service routes a command to its
handler by its class (`service/handlers/`), and a unit test checks that every inbound message
type builds exactly one of these classes and that each class has exactly one handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TypeAlias
from uuid import UUID

from campaign_worker.domain.model import (
    AdProduct,
    BillingType,
    CategoryState,
    Contact,
    CreativeContent,
    FrequencyCap,
    Targeting,
)
from campaign_worker.domain.money import Money
from campaign_worker.domain.serving import HoldSignal

# ------------------------------------------------------------------ the campaign lifecycle


@dataclass(frozen=True)
class CreateCampaign:
    campaign_id: UUID
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


@dataclass(frozen=True)
class UpdateCampaign:
    """`changes`: field name (from EDITABLE_FIELDS, or "advertiser_id") -> new domain value.
    Stored as a read-only copy."""

    campaign_id: UUID
    changes: Mapping[str, object]

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))


@dataclass(frozen=True)
class SubmitCampaign:
    campaign_id: UUID


@dataclass(frozen=True)
class PauseCampaign:
    campaign_id: UUID


@dataclass(frozen=True)
class ResumeCampaign:
    campaign_id: UUID


@dataclass(frozen=True)
class ExtendEnd:
    campaign_id: UUID
    end_at: datetime


@dataclass(frozen=True)
class CancelCampaign:
    campaign_id: UUID
    reason: str | None = None
    penalty: Money | None = None


@dataclass(frozen=True)
class ApproveCampaign:
    campaign_id: UUID


@dataclass(frozen=True)
class RejectCampaign:
    campaign_id: UUID
    reason: str


@dataclass(frozen=True)
class StartDue:
    campaign_id: UUID
    due_at: datetime


@dataclass(frozen=True)
class EndDue:
    campaign_id: UUID
    due_at: datetime


LifecycleCommand: TypeAlias = (
    CreateCampaign
    | UpdateCampaign
    | SubmitCampaign
    | PauseCampaign
    | ResumeCampaign
    | ExtendEnd
    | CancelCampaign
    | ApproveCampaign
    | RejectCampaign
    | StartDue
    | EndDue
)


# ------------------------------------------------------------------ creatives (spec §3)


@dataclass(frozen=True)
class CreateCreative:
    campaign_id: UUID
    creative_id: str
    name: str
    ad_unit_id: str
    content: CreativeContent


@dataclass(frozen=True)
class UpdateCreative:
    """`changes`: any of "name" (str), "ad_unit_id" (str), "content" (a `CreativeContent`, or a
    mapping with any of file_url/destination_url/text, merged into the current content).
    Stored as a read-only copy."""

    campaign_id: UUID
    creative_id: str
    changes: Mapping[str, object]

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))


@dataclass(frozen=True)
class DeleteCreative:
    campaign_id: UUID
    creative_id: str


@dataclass(frozen=True)
class PauseCreative:
    campaign_id: UUID
    creative_id: str


@dataclass(frozen=True)
class ResumeCreative:
    campaign_id: UUID
    creative_id: str


@dataclass(frozen=True)
class ApproveCreative:
    campaign_id: UUID
    creative_id: str


@dataclass(frozen=True)
class RejectCreative:
    campaign_id: UUID
    creative_id: str
    reason: str


CreativeCommand: TypeAlias = (
    CreateCreative
    | UpdateCreative
    | DeleteCreative
    | PauseCreative
    | ResumeCreative
    | ApproveCreative
    | RejectCreative
)


# ------------------------------------------------------------------ holds, duplication


@dataclass(frozen=True)
class ApplyHoldSignal:
    """Set or clear holds: suspend/reinstate (publisher), landing page status."""

    campaign_id: UUID
    signal: HoldSignal
    reason: str | None = None


@dataclass(frozen=True)
class DuplicateCampaign:
    """Copy `campaign_id` into a new DRAFT `new_campaign_id` (spec §9)."""

    campaign_id: UUID
    new_campaign_id: UUID


# ------------------------------------------------------------------ billing facts (spec §5-7)


@dataclass(frozen=True)
class RecordChargeResult:
    """`payment.charge_succeeded` / `payment.charge_failed` from the payment service."""

    campaign_id: UUID
    charge_id: str
    succeeded: bool
    amount: Money | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RecordRefundResult:
    """`payment.refund_succeeded` / `payment.refund_failed` from the payment service."""

    campaign_id: UUID
    refund_id: str
    succeeded: bool
    amount: Money | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RetryRefund:
    """A publisher asks for a failed refund to be requested again."""

    campaign_id: UUID
    refund_id: str


@dataclass(frozen=True)
class ReportDelivery:
    """The ad server's delivery for one period (idempotent by message id)."""

    campaign_id: UUID
    period_start: datetime
    period_end: datetime
    impressions: int
    clicks: int
    spend: Money


@dataclass(frozen=True)
class SettleCampaign:
    """Issue the statement of a CLOSED campaign (spec §6): `final` when the ad server said it
    reported every period (`delivery.final`), else the settlement grace ran out (scheduler)."""

    campaign_id: UUID
    final: bool


@dataclass(frozen=True)
class RetryCharge:
    """The advertiser asks for a failed card charge to be tried again (`campaign.retry_charge`,
    only while `billing_error` is set): a new charge request with a new id."""

    campaign_id: UUID


# ------------------------------------------------------------------ catalog facts


@dataclass(frozen=True)
class UpsertAdProduct:
    product: AdProduct


@dataclass(frozen=True)
class DeleteAdProduct:
    ad_product_id: str


@dataclass(frozen=True)
class UpsertCategory:
    category_id: str
    state: CategoryState


Command: TypeAlias = (
    LifecycleCommand
    | CreativeCommand
    | ApplyHoldSignal
    | DuplicateCampaign
    | RecordChargeResult
    | RecordRefundResult
    | RetryRefund
    | ReportDelivery
    | SettleCampaign
    | RetryCharge
    | UpsertAdProduct
    | DeleteAdProduct
    | UpsertCategory
)
"""Every command the worker accepts."""
