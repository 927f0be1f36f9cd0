"""Duplication (spec §9): the copy/reset table exactly, creative exclusion with reasons, and the
refusal for a deleted product or a bad unit set."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from campaign_worker.domain.commands import SubmitCampaign, UpdateCampaign
from campaign_worker.domain.creatives import CreativeRegistered, evolve_creative
from campaign_worker.domain.duplication import (
    COPIED_FIELDS,
    RESET_FIELDS,
    DuplicationResult,
    ExcludedCreative,
    ExclusionReason,
    duplicate,
    duplicate_creative_id,
)
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.events import CampaignCreated
from campaign_worker.domain.lifecycle import TITLE_MAX_LENGTH, evolve
from campaign_worker.domain.model import (
    Actor,
    AdProduct,
    BillingType,
    Campaign,
    CategoryState,
    Creative,
    CreativeContent,
    CreativeStatus,
    FrequencyCap,
    Status,
    Targeting,
)
from campaign_worker.domain.money import Money
from tests.unit.domain_builders import (
    OTHER_ADVERTISER,
    OWNER,
    PUBLISHER,
    SYSTEM,
    campaign_in,
    eur,
    run,
)

NOW = datetime(2027, 3, 10, 9, 30, tzinfo=UTC)
NEW_ID = UUID("11111111-2222-4333-8444-555555555555")
PRODUCT = AdProduct(
    id="prod-1",
    name="Product prod-1",
    unit_ids=("unit-a", "unit-b"),
    unit_set_valid=True,
    buyable=True,
    deleted=False,
)
CONTENT = CreativeContent("https://cdn.example.com/a.png", "https://shop.example.com/", "Hi")


def creative(
    campaign: Campaign, cid: str, status: CreativeStatus, unit: str = "unit-a", **kw: object
) -> Creative:
    c = Creative(cid, campaign.id, f"Creative {cid}", unit, CONTENT, status, version=4)
    return replace(c, **kw)  # type: ignore[arg-type]


def dup(
    source: Campaign,
    creatives: list[Creative] | None = None,
    product: AdProduct | None = PRODUCT,
    categories: dict[str, CategoryState] | None = None,
    actor: Actor = OWNER,
    **kw: object,
) -> DuplicationResult:
    return duplicate(
        source,
        creatives or [],
        product,
        categories or {},
        NEW_ID,
        NOW,
        "a1b2c3",
        actor=actor,
        **kw,  # type: ignore[arg-type]
    )


def refused(source: Campaign, product: AdProduct | None, actor: Actor = OWNER) -> Refusal:
    with pytest.raises(Refusal) as info:
        dup(source, product=product, actor=actor)
    return info.value


# =============================================================================================
# The issue-5 example
# =============================================================================================


def test_duplicate_copies_only_the_approved_compatible_creative_as_under_review() -> None:
    source = campaign_in(Status.LIVE)
    creatives = [
        creative(source, "rejected", CreativeStatus.REJECTED, rejection_reason="blurry"),
        creative(source, "deleted", CreativeStatus.APPROVED, deleted=True, deleted_at=NOW),
        creative(source, "incompatible", CreativeStatus.APPROVED, unit="unit-z"),
        creative(source, "approved", CreativeStatus.APPROVED),
    ]
    result = dup(source, creatives)
    assert len(result.creatives) == 1
    (copy,) = result.creatives
    assert copy.status is CreativeStatus.UNDER_REVIEW
    assert copy.campaign_id == NEW_ID and copy.id == duplicate_creative_id(NEW_ID, "approved")
    assert (copy.name, copy.ad_unit_id, copy.content) == ("Creative approved", "unit-a", CONTENT)
    assert copy.version == 1 and not copy.deleted and copy.rejection_reason is None
    assert result.excluded == (
        ExcludedCreative("rejected", ExclusionReason.REJECTED),
        ExcludedCreative("deleted", ExclusionReason.DELETED),
        ExcludedCreative("incompatible", ExclusionReason.UNIT_NOT_IN_PRODUCT),
    )
    assert result.creative_ids == (("approved", copy.id),)
    assert "creatives" in result.copied


@pytest.mark.parametrize(
    ("product", "needle"),
    [
        (replace(PRODUCT, deleted=True), "deleted"),
        (None, "not in the catalog"),
        (replace(PRODUCT, unit_set_valid=False), "needs modification"),
        (replace(PRODUCT, unit_ids=()), "missing"),
    ],
)
def test_duplication_is_refused_when_the_product_is_deleted_or_its_unit_set_is_bad(
    product: AdProduct | None, needle: str
) -> None:
    refusal = refused(campaign_in(Status.LIVE), product)
    assert refusal.code is RefusalCode.DUPLICATE_NOT_ALLOWED and needle in refusal.message


# =============================================================================================
# The copy/reset table
# =============================================================================================


def test_duplicate_is_a_draft_with_budget_zero_new_dates_and_a_suffixed_title() -> None:
    source = campaign_in(Status.CLOSED, budget=Money.of("980.50", "BHD"))
    result = dup(source)
    new = result.campaign
    assert new.id == NEW_ID and new.status is Status.DRAFT and new.version == 1
    assert new.budget == Money.zero("BHD")
    assert new.start_at == NOW + timedelta(days=7)
    assert new.end_at - new.start_at == source.end_at - source.start_at
    assert new.title == "Winter sale a1b2c3"
    assert (new.paused_from, new.rejection_reason, new.cancel_reason, new.penalty) == (
        None,
        None,
        None,
        None,
    )
    assert result.reset == RESET_FIELDS == ("budget", "start_at", "end_at", "title", "status")


def test_duplicate_copies_product_targeting_frequency_cap_billing_contact_and_time_zone() -> None:
    source = campaign_in(
        Status.PAUSED,
        billing_type=BillingType.MANUAL,
        frequency_cap=FrequencyCap(5, "week"),
        targeting=Targeting(categories=("books", "music"), groups=("g-1",)),
    )
    result = dup(source)
    new = result.campaign
    for name in ("ad_product_id", "targeting", "frequency_cap", "billing_type", "contact",
                 "timezone", "advertiser_id"):  # fmt: skip
        assert getattr(new, name) == getattr(source, name), name
    assert result.copied == COPIED_FIELDS  # no creatives to copy
    assert not result.targeting_reset and result.targeting_removed == ()


def test_deleted_or_deactivated_targeting_is_reset_and_the_result_says_so() -> None:
    source = campaign_in(
        Status.LIVE,
        targeting=Targeting(categories=("books", "music", "toys", "new"), groups=("g-1", "g-2")),
    )
    categories = {
        "books": CategoryState.ACTIVE,
        "music": CategoryState.DELETED,
        "toys": CategoryState.DEACTIVATED,
        "g-1": CategoryState.DEACTIVATED,
        "g-2": CategoryState.ACTIVE,
    }  # "new" is unknown to the catalog: kept
    result = dup(source, categories=categories)
    assert result.campaign.targeting == Targeting(categories=("books", "new"), groups=("g-2",))
    assert result.targeting_reset
    assert result.targeting_removed == ("music", "toys", "g-1")


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.value)
def test_any_campaign_can_be_duplicated(status: Status) -> None:
    assert dup(campaign_in(status)).campaign.status is Status.DRAFT


@pytest.mark.parametrize(
    "status", [CreativeStatus.UNDER_REVIEW, CreativeStatus.APPROVED, CreativeStatus.PAUSED]
)
def test_every_creative_that_is_neither_rejected_nor_deleted_is_copied_for_review(
    status: CreativeStatus,
) -> None:
    source = campaign_in(Status.LIVE)
    result = dup(source, [creative(source, "c", status, unit="unit-b")])
    assert [c.status for c in result.creatives] == [CreativeStatus.UNDER_REVIEW]
    assert result.excluded == ()


def test_the_most_decisive_exclusion_reason_is_given() -> None:
    source = campaign_in(Status.LIVE)
    both = [
        creative(source, "d", CreativeStatus.REJECTED, deleted=True, deleted_at=NOW),
        creative(source, "r", CreativeStatus.REJECTED, unit="unit-z"),
    ]
    assert [e.why for e in dup(source, both).excluded] == [
        ExclusionReason.DELETED,
        ExclusionReason.REJECTED,
    ]


def test_creative_ids_come_from_the_callable_or_deterministically_from_the_new_id() -> None:
    source = campaign_in(Status.LIVE)
    creatives = [creative(source, f"c{i}", CreativeStatus.APPROVED) for i in range(3)]
    first, again = dup(source, creatives), dup(source, creatives)
    assert [c.id for c in first.creatives] == [c.id for c in again.creatives]
    assert len({c.id for c in first.creatives}) == 3
    custom = dup(source, creatives, creative_id=lambda old: f"copy-of-{old}")
    assert [c.id for c in custom.creatives] == ["copy-of-c0", "copy-of-c1", "copy-of-c2"]
    with pytest.raises(ValueError):
        dup(source, creatives, creative_id=lambda old: "same")


def test_title_suffix_fits_the_title_limit_and_defaults_to_the_new_id() -> None:
    long = campaign_in(Status.LIVE, title="x" * TITLE_MAX_LENGTH)
    title = dup(long).campaign.title
    assert len(title) == TITLE_MAX_LENGTH and title.endswith(" a1b2c3")
    plain = campaign_in(Status.LIVE)
    result = duplicate(plain, [], PRODUCT, {}, NEW_ID, NOW, actor=OWNER)
    assert result.campaign.title == "Winter sale 11111111"
    for blank in ("", " ", "a b"):
        with pytest.raises(Refusal) as info:
            duplicate(plain, [], PRODUCT, {}, NEW_ID, NOW, blank, actor=OWNER)
        assert info.value.code is RefusalCode.VALIDATION_FAILED


def test_only_the_owner_or_the_publisher_duplicates() -> None:
    source = campaign_in(Status.LIVE)
    assert dup(source, actor=PUBLISHER).campaign.advertiser_id == source.advertiser_id
    for actor in (OTHER_ADVERTISER, SYSTEM):
        assert refused(source, PRODUCT, actor).code is RefusalCode.FORBIDDEN


def test_duplication_caller_bugs_raise_value_error() -> None:
    source = campaign_in(Status.LIVE)
    other = campaign_in(Status.LIVE)
    with pytest.raises(ValueError):
        duplicate(source, [], PRODUCT, {}, NEW_ID, datetime(2027, 1, 1), actor=OWNER)
    with pytest.raises(ValueError):
        duplicate(source, [], PRODUCT, {}, source.id, NOW, actor=OWNER)
    with pytest.raises(ValueError):
        duplicate(source, [], replace(PRODUCT, id="prod-2"), {}, NEW_ID, NOW, actor=OWNER)
    with pytest.raises(ValueError):
        dup(source, [creative(other, "c", CreativeStatus.APPROVED)])
    twice = creative(source, "c", CreativeStatus.APPROVED)
    with pytest.raises(ValueError):
        dup(source, [twice, twice])


def test_duplicate_goes_through_the_lifecycle_and_can_be_submitted_once_budgeted() -> None:
    source = campaign_in(Status.CLOSED)
    result = dup(source, [creative(source, "c", CreativeStatus.APPROVED)])
    stored = evolve(None, CampaignCreated(result.campaign))
    assert stored == result.campaign
    for copy in result.creatives:
        assert evolve_creative(None, CreativeRegistered(copy)) == copy
    budgeted, _ = run(stored, UpdateCampaign(stored.id, {"budget": eur("500.00")}), OWNER, NOW)
    submitted, _ = run(budgeted, SubmitCampaign(stored.id), OWNER, NOW)
    assert submitted.status is Status.SUBMITTED


def test_duplicating_twice_gives_distinct_campaigns() -> None:
    source = campaign_in(Status.LIVE)
    a = duplicate(source, [], PRODUCT, {}, uuid4(), NOW, actor=OWNER)
    b = duplicate(source, [], PRODUCT, {}, uuid4(), NOW, actor=OWNER)
    assert a.campaign.id != b.campaign.id and a.campaign.title != b.campaign.title
