"""Duplication (spec §9): copy a campaign into a new DRAFT, by the copy/reset table.

| copied | reset |
|---|---|
| ad product; targeting (ids whose category is deleted or deactivated are dropped, and the
  result says so); frequency cap; billing type; contact info; time zone; creatives that are
  neither rejected nor deleted and still fit the product's unit set, each as UNDER_REVIEW |
  budget 0; start = now + 7 days; end = new start + the original duration; title = original
  title + " " + a short unique id; status DRAFT |

Any campaign (whatever its status) can be duplicated, except when its ad product is missing
from the catalog or deleted, or its unit set is missing or invalid (`duplicate_not_allowed`).

`duplicate(...)` is pure: the caller supplies the catalog facts, the new ids and `now`. The
service stores `result.campaign` through `CampaignCreated` and each of `result.creatives`
through `CreativeRegistered`, and publishes `campaign.duplicated` from the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid5

from campaign_worker.domain.checks import aware_utc
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.lifecycle import TITLE_MAX_LENGTH
from campaign_worker.domain.model import (
    Actor,
    AdProduct,
    Campaign,
    CategoryState,
    Creative,
    CreativeStatus,
    Status,
    Targeting,
)
from campaign_worker.domain.money import Money
from campaign_worker.domain.permissions import check

__all__ = [
    "COPIED_FIELDS",
    "RESET_FIELDS",
    "START_DELAY",
    "DuplicationResult",
    "ExcludedCreative",
    "ExclusionReason",
    "duplicate",
    "duplicate_creative_id",
]

START_DELAY = timedelta(days=7)

# What the result reports as copied / reset (campaign field names; "creatives" is copied when
# at least one creative was).
COPIED_FIELDS: tuple[str, ...] = (
    "ad_product_id",
    "targeting",
    "frequency_cap",
    "billing_type",
    "contact",
    "timezone",
)
RESET_FIELDS: tuple[str, ...] = ("budget", "start_at", "end_at", "title", "status")


class ExclusionReason(StrEnum):
    """Why a creative was left out (the `why` of `excluded_creatives`), most decisive first."""

    DELETED = "deleted"
    REJECTED = "rejected"
    UNIT_NOT_IN_PRODUCT = "unit_not_in_product"


@dataclass(frozen=True)
class ExcludedCreative:
    creative_id: str
    why: ExclusionReason


@dataclass(frozen=True)
class DuplicationResult:
    source_campaign_id: UUID
    campaign: Campaign  # the new DRAFT
    creatives: tuple[Creative, ...]  # the copies, each UNDER_REVIEW, in source order
    copied: tuple[str, ...]  # field names (COPIED_FIELDS, plus "creatives" if any was copied)
    reset: tuple[str, ...]  # field names (RESET_FIELDS)
    excluded: tuple[ExcludedCreative, ...]  # source creatives left out, in source order
    targeting_reset: bool  # some targeting ids were dropped
    targeting_removed: tuple[str, ...] = ()  # the dropped ids (categories first, then groups)
    # source creative id -> id of its copy
    creative_ids: tuple[tuple[str, str], ...] = ()


def duplicate_creative_id(new_campaign_id: UUID, source_creative_id: str) -> str:
    """The default id of a copied creative: deterministic from the new campaign id, so that a
    redelivered `campaign.duplicate` produces the same ids."""
    return str(uuid5(new_campaign_id, f"creative:{source_creative_id}"))


def duplicate(
    source: Campaign,
    creatives: Iterable[Creative],
    product: AdProduct | None,
    categories: Mapping[str, CategoryState],
    new_id: UUID,
    now: datetime,
    short_id: str | None = None,
    *,
    actor: Actor,
    creative_id: Callable[[str], str] | None = None,
) -> DuplicationResult:
    """Duplicate `source` into a new DRAFT campaign `new_id`, or raise `Refusal`.

    - `creatives`: every creative of `source`, tombstones included.
    - `product`: the catalog entry of `source.ad_product_id` (None when the catalog has none).
    - `categories`: catalog state of targeting ids (categories and groups). An id the catalog
      has said nothing about is kept.
    - `short_id`: the title suffix; default: the first 8 hex digits of `new_id`.
    - `creative_id`: new id of the copy of a source creative; default `duplicate_creative_id`.

    Refusals: `forbidden` (the system, or an advertiser duplicating another's campaign);
    `duplicate_not_allowed` (product missing or deleted, unit set missing or invalid);
    `validation_failed` (a blank short id). `ValueError` for caller bugs (naive `now`, a
    product or creative of another campaign, `new_id` equal to the source id).
    """
    now = aware_utc(now, "now")
    if new_id == source.id:
        raise ValueError("the duplicate needs a new campaign id")
    if product is not None and product.id != source.ad_product_id:
        raise ValueError(f"product {product.id} is not the ad product of campaign {source.id}")
    check("campaign.duplicate", actor, source.advertiser_id, f"campaign {source.id}")

    if product is None or product.deleted:
        state = "is not in the catalog" if product is None else "has been deleted"
        raise Refusal(
            RefusalCode.DUPLICATE_NOT_ALLOWED,
            f"campaign {source.id} cannot be duplicated: its ad product "
            f"{source.ad_product_id!r} {state}",
        )
    if not product.unit_set_valid or not product.unit_ids:
        state = "needs modification" if product.unit_ids else "is missing"
        raise Refusal(
            RefusalCode.DUPLICATE_NOT_ALLOWED,
            f"campaign {source.id} cannot be duplicated: the unit set of ad product "
            f"{product.id!r} {state}",
        )

    suffix = new_id.hex[:8] if short_id is None else short_id
    if not isinstance(suffix, str) or not suffix.strip() or any(c.isspace() for c in suffix):
        raise Refusal(
            RefusalCode.VALIDATION_FAILED, f"short id {suffix!r} must be a non-blank token"
        )
    title = _title(source.title, suffix)

    targeting, removed = _targeting(source.targeting, categories)
    start_at = now + START_DELAY
    campaign = Campaign(
        id=new_id,
        advertiser_id=source.advertiser_id,
        title=title,
        ad_product_id=source.ad_product_id,
        budget=Money.zero(source.budget.currency),
        billing_type=source.billing_type,
        start_at=start_at,
        end_at=start_at + (source.end_at - source.start_at),
        targeting=targeting,
        frequency_cap=source.frequency_cap,
        contact=source.contact,
        timezone=source.timezone,
        status=Status.DRAFT,
        version=1,
    )

    new_creative_id = creative_id or (lambda cid: duplicate_creative_id(new_id, cid))
    units = frozenset(product.unit_ids)
    copies: list[Creative] = []
    excluded: list[ExcludedCreative] = []
    ids: list[tuple[str, str]] = []
    seen: set[str] = set()
    for creative in creatives:
        if creative.campaign_id != source.id:
            raise ValueError(f"creative {creative.id} does not belong to campaign {source.id}")
        if creative.id in seen:
            raise ValueError(f"creative {creative.id} given twice")
        seen.add(creative.id)
        why = _exclusion(creative, units)
        if why is not None:
            excluded.append(ExcludedCreative(creative.id, why))
            continue
        copy_id = new_creative_id(creative.id)
        copies.append(
            Creative(
                id=copy_id,
                campaign_id=new_id,
                name=creative.name,
                ad_unit_id=creative.ad_unit_id,
                content=creative.content,
                status=CreativeStatus.UNDER_REVIEW,
                version=1,
            )
        )
        ids.append((creative.id, copy_id))
    if len({copy.id for copy in copies}) != len(copies):
        raise ValueError("creative_id produced the same id for two creatives")

    return DuplicationResult(
        source_campaign_id=source.id,
        campaign=campaign,
        creatives=tuple(copies),
        copied=COPIED_FIELDS + (("creatives",) if copies else ()),
        reset=RESET_FIELDS,
        excluded=tuple(excluded),
        targeting_reset=bool(removed),
        targeting_removed=removed,
        creative_ids=tuple(ids),
    )


def _title(original: str, suffix: str) -> str:
    tail = f" {suffix}"
    return original[: max(TITLE_MAX_LENGTH - len(tail), 0)].rstrip() + tail


def _targeting(
    targeting: Targeting, categories: Mapping[str, CategoryState]
) -> tuple[Targeting, tuple[str, ...]]:
    gone = {CategoryState.DELETED, CategoryState.DEACTIVATED}
    removed = tuple(
        item for item in (*targeting.categories, *targeting.groups) if categories.get(item) in gone
    )
    if not removed:
        return targeting, ()
    return (
        Targeting(
            categories=tuple(c for c in targeting.categories if c not in removed),
            groups=tuple(g for g in targeting.groups if g not in removed),
        ),
        removed,
    )


def _exclusion(creative: Creative, units: frozenset[str]) -> ExclusionReason | None:
    if creative.deleted:
        return ExclusionReason.DELETED
    if creative.status is CreativeStatus.REJECTED:
        return ExclusionReason.REJECTED
    if creative.ad_unit_id not in units:
        return ExclusionReason.UNIT_NOT_IN_PRODUCT
    return None
