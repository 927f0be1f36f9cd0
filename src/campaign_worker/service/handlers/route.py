"""What a handler declares: the commands it takes, and what it needs loaded for one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from campaign_worker.domain.model import AdProduct
from campaign_worker.service.batch import Batch
from campaign_worker.service.inbound import Inbound


@dataclass(frozen=True)
class Wants:
    """What one message needs in the batch before its handler runs.

    `campaigns` are loaded and locked (FOR UPDATE, in id order); `products` read from the
    catalog (the products of every loaded campaign are read anyway); `status_history` loads the
    statuses a campaign went through (for billing LIVE periods); `buyability` names a product
    whose open campaigns are locked too when this message flips its `buyable` flag;
    `relevance_peers` names campaigns whose ad product's peers (the figures relevance is
    judged against) are read, in one query for the whole batch."""

    campaigns: frozenset[UUID] = frozenset()
    products: frozenset[str] = frozenset()
    status_history: frozenset[UUID] = frozenset()
    buyability: AdProduct | None = None
    relevance_peers: frozenset[UUID] = frozenset()


def its_campaign(command: Any, item: Inbound) -> Wants:
    """The default: the message's own campaign."""
    return Wants(campaigns=frozenset({item.campaign_id}) if item.campaign_id else frozenset())


Handle = Callable[[Batch, Inbound, Any], None]
WantsOf = Callable[[Any, Inbound], Wants]


@dataclass(frozen=True)
class Route:
    """`ends_first`: a command that arrives after its campaign's end instant sees the
    campaign as ended: the processor applies the due end first, in the same transaction
    (spec §1 "Dates"). Facts reported by other systems (payments, delivery) and the time
    triggers themselves are taken as they come."""

    commands: tuple[type, ...]
    handle: Handle
    wants: WantsOf = its_campaign
    ends_first: bool = True
