"""Commands: imperative, one handler each, refused loudly (a `Refusal`) when they break a rule.

Every command names the campaign it acts on. Values are already domain-typed (the
entrypoints parse the wire format).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TypeAlias
from uuid import UUID

from campaign_worker.domain.model import BillingType, Contact, FrequencyCap, Targeting
from campaign_worker.domain.money import Money


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


Command: TypeAlias = (
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
