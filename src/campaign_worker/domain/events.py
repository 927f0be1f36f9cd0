"""Events: past tense, what `decide` returns and `evolve` applies (one per accepted command)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias
from uuid import UUID

from campaign_worker.domain.model import Campaign, Status, Trigger
from campaign_worker.domain.money import Money


@dataclass(frozen=True)
class CampaignCreated:
    campaign: Campaign


@dataclass(frozen=True)
class CampaignStatusChanged:
    campaign_id: UUID
    from_status: Status
    to_status: Status
    trigger: Trigger
    reason: str | None = None
    penalty: Money | None = None
    # The spec's rule that fired ("T1".."T11"): lets the service pick side effects (T6 vs T7,
    # T10 vs T11). Informative only: not part of equality.
    rule: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CampaignUpdated:
    """Only the fields whose value really changed, with their new values (read-only)."""

    campaign_id: UUID
    changes: Mapping[str, object]

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))


Event: TypeAlias = CampaignCreated | CampaignStatusChanged | CampaignUpdated
