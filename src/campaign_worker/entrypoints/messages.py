"""One documented pydantic model per message type of the contract.

These models are the only place where the wire format is described: the JSON Schemas and the
AsyncAPI document in `schemas/` are generated from them. Unknown extra fields are ignored
(forward compatibility); missing or malformed required ones are errors, and such a message is
dead-lettered.

Nothing a message says is unbounded (the limits are in the schemas too, and a unit test walks
them): every string has a maximum length (ids and names 200, URLs 2,000, free text 1,000 to
5,000, as each field says), every list a maximum size (targeting 500 ids, unit sets 1,000),
counts a maximum (a delivery report's impressions and clicks 10^12), instants and local times
lie between 1970 and 3000, and no string may hold a NUL character or a lone UTF-16 surrogate
(neither Postgres nor UTF-8 can store them). A message outside these limits is dead-lettered as
`invalid_data` before any rule sees it.
"""

from __future__ import annotations

import builtins
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NaiveDatetime,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from campaign_worker import topics
from campaign_worker.domain import commands as cmd

_AMOUNT = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")


def _decimal_string(value: str) -> str:
    if not _AMOUNT.match(value):
        raise ValueError(f"amount must be a decimal string like '1250.00', got {value!r}")
    return value


NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

# The limits of lists (see the module's docstring).
MAX_TARGETING_IDS = 500
MAX_UNIT_IDS = 1000
MAX_COUNT = 10**12  # impressions or clicks in one delivery report

# Instants and local times: from 1970 to 3000 (date arithmetic on them never overflows).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
_RANGE = "between 1970-01-01 and 3000-01-01"


def _instant_in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"instant must be {_RANGE}") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"instant must be {_RANGE}")
    return value


def _local_in_range(value: datetime) -> datetime:
    if not EARLIEST.replace(tzinfo=None) <= value < LATEST.replace(tzinfo=None):
        raise ValueError(f"local date-time must be {_RANGE}")
    return value


def _at_most(limit: int) -> Any:
    """A check, before parsing, that a string form is at most `limit` characters."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    return BeforeValidator(check)


_TIME_CHARS = 64  # RFC 3339 with a fraction of a second and an offset fits easily
Instant = Annotated[
    AwareDatetime,
    _at_most(_TIME_CHARS),
    AfterValidator(_instant_in_range),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "maxLength": _TIME_CHARS,
            "description": f"RFC 3339 instant with an offset, {_RANGE}.",
        }
    ),
]
LocalTime = Annotated[
    NaiveDatetime,
    _at_most(_TIME_CHARS),
    AfterValidator(_local_in_range),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "maxLength": _TIME_CHARS,
            "description": f"Local date-time without offset, {_RANGE}.",
        }
    ),
]
Uuid = Annotated[
    UUID,
    _at_most(36),
    WithJsonSchema({"type": "string", "format": "uuid", "maxLength": 36}),
]


def _storable(value: Any) -> Any:
    """Refuse strings Postgres text cannot hold: a NUL character (lone UTF-16 surrogates are
    refused by pydantic itself)."""
    for s in value if isinstance(value, list | tuple) else (value,):
        if isinstance(s, str) and "\x00" in s:
            raise ValueError("must not contain NUL characters")
    return value


class Wire(BaseModel):
    """Base of every payload model: extra fields ignored, values validated strictly enough."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return _storable(value)


class MoneyIn(Wire):
    amount: Annotated[str, AfterValidator(_decimal_string)] = Field(
        max_length=23,
        description="Decimal string, never a float: up to 15 digits, a point and 6 more.",
        examples=["1250.00"],
    )
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$", max_length=3)] = Field(
        description="ISO 4217 code.", examples=["EUR"]
    )

    def decimal(self) -> Decimal:
        return Decimal(self.amount)


class TargetingIn(Wire):
    categories: list[Identifier] = Field(default_factory=list, max_length=MAX_TARGETING_IDS)
    groups: list[Identifier] = Field(default_factory=list, max_length=MAX_TARGETING_IDS)


class FrequencyCapIn(Wire):
    impressions: int = Field(description="Impressions per period.", examples=[3])
    per: str = Field(max_length=20, description="hour, day, week or month.", examples=["day"])


class ContactIn(Wire):
    name: str = Field(max_length=200, examples=["Ada Lovelace"])
    email: str = Field(min_length=3, max_length=320, examples=["ada@example.com"])


# ---------------------------------------------------------------- envelope


class CloudEvent(BaseModel):
    """CloudEvents 1.0, structured JSON mode: the envelope of every message on every topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = Field(description="Always '1.0'.")
    id: Identifier = Field(description="Idempotency key: the same id twice is processed once.")
    source: NonBlank = Field(examples=["/ad-platform/web"])
    type: Identifier = Field(examples=["campaign.submit"])
    subject: str | None = Field(
        None, max_length=200, description="The campaign id (UUID) for campaign messages."
    )
    time: Instant | None = None
    datacontenttype: str | None = Field(None, max_length=255, examples=["application/json"])
    actorrole: Literal["advertiser", "publisher", "system"] | None = None
    actorid: Identifier | None = None
    correlationid: str | None = Field(None, max_length=200)
    causationid: str | None = Field(None, max_length=200)
    data: dict[str, Any] | None = None

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return _storable(value)

    @model_validator(mode="after")
    def _advertiser_has_id(self) -> CloudEvent:
        if self.actorrole == "advertiser" and not self.actorid:
            raise ValueError("actorid is required when actorrole is 'advertiser'")
        return self


# ---------------------------------------------------------------- campaign.commands


class CampaignCreate(Wire):
    """`campaign.create`: a new DRAFT campaign; the envelope's subject is its id."""

    advertiser_id: Identifier = Field(examples=["adv-42"])
    title: str = Field(max_length=1000, examples=["Winter sale"])
    ad_product_id: Identifier = Field(examples=["prod-banner"])
    budget: MoneyIn
    billing_type: Literal["card", "manual"]
    start_at: Instant | None = Field(
        None, description="RFC 3339 instant (or give start_local with timezone)."
    )
    end_at: Instant | None = Field(
        None, description="RFC 3339 instant, after start_at (or give end_local with timezone)."
    )
    start_local: LocalTime | None = Field(
        None,
        description="Local wall-clock start in `timezone`, converted once to an instant; a time "
        "in a spring-forward gap is refused, an ambiguous one means its first occurrence.",
        examples=["2026-03-29T03:30:00"],
    )
    end_local: LocalTime | None = Field(None, description="Local wall-clock end.")
    targeting: TargetingIn = Field(default_factory=TargetingIn)
    frequency_cap: FrequencyCapIn | None = None
    contact: ContactIn
    timezone: str | None = Field(None, max_length=64, examples=["Europe/Berlin"])

    @model_validator(mode="after")
    def _one_form_per_time(self) -> CampaignCreate:
        _check_time_forms(self, required=True)
        return self


class CampaignUpdate(Wire):
    """`campaign.update`: any subset of the create fields."""

    advertiser_id: Identifier | None = None
    title: str | None = Field(None, max_length=1000)
    ad_product_id: Identifier | None = None
    budget: MoneyIn | None = None
    billing_type: Literal["card", "manual"] | None = None
    start_at: Instant | None = None
    end_at: Instant | None = None
    start_local: LocalTime | None = None
    end_local: LocalTime | None = None
    targeting: TargetingIn | None = None
    frequency_cap: FrequencyCapIn | None = None
    contact: ContactIn | None = None
    timezone: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _something(self) -> CampaignUpdate:
        if not self.model_fields_set:
            raise ValueError("campaign.update needs at least one field")
        _check_time_forms(self, required=False)
        return self


def _check_time_forms(m: CampaignCreate | CampaignUpdate, *, required: bool) -> None:
    for name in ("start", "end"):
        instant, local = getattr(m, f"{name}_at"), getattr(m, f"{name}_local")
        if instant is not None and local is not None:
            raise ValueError(f"give {name}_at or {name}_local, not both")
        if required and instant is None and local is None:
            raise ValueError(f"{name}_at (or {name}_local with timezone) is required")
        if local is not None and not m.timezone:
            raise ValueError(f"{name}_local needs timezone in the same message")


class Empty(Wire):
    """No data fields (`data` may be absent or `{}`)."""


class CampaignExtendEnd(Wire):
    """`campaign.extend_end`: a later end time."""

    end_at: Instant


class CampaignCancel(Wire):
    """`campaign.cancel`: optional reason; a penalty only from the publisher."""

    reason: str | None = Field(None, max_length=1000)
    penalty: MoneyIn | None = None


class CampaignDuplicate(Wire):
    """`campaign.duplicate`: copy the subject campaign into a new DRAFT (spec §9)."""

    new_campaign_id: Uuid = Field(description="Id of the new campaign.")


class CreativeContentIn(Wire):
    file_url: str = Field(max_length=2000, examples=["https://cdn.example.com/banner.png"])
    destination_url: str = Field(max_length=2000, examples=["https://shop.example.com/sale"])
    text: str = Field(max_length=5000, examples=["50% off this week"])


class CreativeContentPatch(Wire):
    file_url: str | None = Field(None, max_length=2000)
    destination_url: str | None = Field(None, max_length=2000)
    text: str | None = Field(None, max_length=5000)


class CreativeCreate(Wire):
    """`creative.create`: register a creative (UNDER_REVIEW)."""

    creative_id: Identifier
    name: str = Field(max_length=1000)
    ad_unit_id: Identifier
    content: CreativeContentIn


class CreativeUpdate(Wire):
    """`creative.update`: a content change (file, URL, text, ad unit) sends it back to
    review; a name-only change applies at once."""

    creative_id: Identifier
    name: str | None = Field(None, max_length=1000)
    ad_unit_id: Identifier | None = None
    content: CreativeContentPatch | None = None

    @model_validator(mode="after")
    def _something(self) -> CreativeUpdate:
        if not (self.model_fields_set - {"creative_id"}):
            raise ValueError("creative.update needs name, ad_unit_id or content")
        return self


class CreativeRef(Wire):
    """`creative.delete` / `creative.pause` / `creative.resume` / `review.creative_approved`."""

    creative_id: Identifier


# ---------------------------------------------------------------- campaign.reviews


class CreativeRejected(Wire):
    """`review.creative_rejected`: the reason is required."""

    creative_id: Identifier
    reason: str = Field(max_length=2000)


class CampaignSuspended(Wire):
    """`review.campaign_suspended`: a policy hold, with its reason."""

    reason: str = Field(max_length=2000)


class LandingPageStatus(Wire):
    """`review.landing_page_status`: the landing-page check's result."""

    available: bool


class CampaignRejected(Wire):
    """`review.campaign_rejected`: the reason is required."""

    reason: str = Field(max_length=2000)


# ---------------------------------------------------------------- campaign.payments


class ChargeSucceeded(Wire):
    """`payment.charge_succeeded`."""

    charge_id: Identifier
    amount: MoneyIn


class ChargeFailed(Wire):
    """`payment.charge_failed`."""

    charge_id: Identifier
    reason: str = Field(max_length=2000)


class RefundSucceeded(Wire):
    """`payment.refund_succeeded`."""

    refund_id: Identifier
    amount: MoneyIn | None = None


class RefundFailed(Wire):
    """`payment.refund_failed`: the refund stays visible and can be retried."""

    refund_id: Identifier
    reason: str = Field(max_length=2000)


class RefundRetry(Wire):
    """`refund.retry` (publisher): request a failed refund again."""

    refund_id: Identifier


# ---------------------------------------------------------------- campaign.delivery


class DeliveryReported(Wire):
    """`delivery.reported`: what the ad server delivered in a period (idempotent by id)."""

    period_start: Instant
    period_end: Instant
    impressions: int = Field(ge=0, le=MAX_COUNT)
    clicks: int = Field(ge=0, le=MAX_COUNT)
    spend: MoneyIn

    @model_validator(mode="after")
    def _ordered(self) -> DeliveryReported:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        if self.clicks > self.impressions:
            raise ValueError("more clicks than impressions")
        return self


class DeliveryFinal(Wire):
    """`delivery.final` (no data): the ad server has reported every period of this closed
    campaign; its statement may be issued now (instead of after the settlement grace)."""


# ---------------------------------------------------------------- campaign.schedule


class ScheduleDue(Wire):
    """`schedule.start_due` / `schedule.end_due`."""

    due_at: Instant


# ---------------------------------------------------------------- campaign.catalog


class AdProductUpserted(Wire):
    """`catalog.ad_product_upserted`."""

    ad_product_id: Identifier
    name: str = Field(max_length=1000)
    unit_ids: list[Identifier] = Field(default_factory=list, max_length=MAX_UNIT_IDS)
    unit_set_valid: bool
    buyable: bool


class AdProductDeleted(Wire):
    """`catalog.ad_product_deleted`."""

    ad_product_id: Identifier


class CategoryUpserted(Wire):
    """`catalog.category_upserted`: a targeting category or group, active or deactivated."""

    category_id: Identifier
    active: bool


class CategoryDeleted(Wire):
    """`catalog.category_deleted`."""

    category_id: Identifier


# ---------------------------------------------------------------- registry


class InboundType(BaseModel):
    """What the worker accepts: type name -> topic, payload model, the command it becomes (each
    command class has exactly one handler, `service/routing.py`), whether it is
    campaign-scoped."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    type: str
    topic: str
    data: builtins.type[Wire]
    command: builtins.type  # the one command class this type is translated into
    campaign_scoped: bool = True


INBOUND_TYPES: dict[str, InboundType] = {
    t.type: t
    for t in (
        InboundType(
            type="campaign.create",
            command=cmd.CreateCampaign,
            topic=topics.COMMANDS,
            data=CampaignCreate,
        ),
        InboundType(
            type="campaign.update",
            command=cmd.UpdateCampaign,
            topic=topics.COMMANDS,
            data=CampaignUpdate,
        ),
        InboundType(
            type="campaign.submit", command=cmd.SubmitCampaign, topic=topics.COMMANDS, data=Empty
        ),
        InboundType(
            type="campaign.pause", command=cmd.PauseCampaign, topic=topics.COMMANDS, data=Empty
        ),
        InboundType(
            type="campaign.resume", command=cmd.ResumeCampaign, topic=topics.COMMANDS, data=Empty
        ),
        InboundType(
            type="campaign.extend_end",
            command=cmd.ExtendEnd,
            topic=topics.COMMANDS,
            data=CampaignExtendEnd,
        ),
        InboundType(
            type="campaign.cancel",
            command=cmd.CancelCampaign,
            topic=topics.COMMANDS,
            data=CampaignCancel,
        ),
        InboundType(
            type="campaign.duplicate",
            command=cmd.DuplicateCampaign,
            topic=topics.COMMANDS,
            data=CampaignDuplicate,
        ),
        InboundType(
            type="creative.create",
            command=cmd.CreateCreative,
            topic=topics.COMMANDS,
            data=CreativeCreate,
        ),
        InboundType(
            type="creative.update",
            command=cmd.UpdateCreative,
            topic=topics.COMMANDS,
            data=CreativeUpdate,
        ),
        InboundType(
            type="creative.delete",
            command=cmd.DeleteCreative,
            topic=topics.COMMANDS,
            data=CreativeRef,
        ),
        InboundType(
            type="creative.pause",
            command=cmd.PauseCreative,
            topic=topics.COMMANDS,
            data=CreativeRef,
        ),
        InboundType(
            type="creative.resume",
            command=cmd.ResumeCreative,
            topic=topics.COMMANDS,
            data=CreativeRef,
        ),
        InboundType(
            type="review.creative_approved",
            command=cmd.ApproveCreative,
            topic=topics.REVIEWS,
            data=CreativeRef,
        ),
        InboundType(
            type="review.creative_rejected",
            command=cmd.RejectCreative,
            topic=topics.REVIEWS,
            data=CreativeRejected,
        ),
        InboundType(
            type="review.campaign_suspended",
            command=cmd.ApplyHoldSignal,
            topic=topics.REVIEWS,
            data=CampaignSuspended,
        ),
        InboundType(
            type="review.campaign_reinstated",
            command=cmd.ApplyHoldSignal,
            topic=topics.REVIEWS,
            data=Empty,
        ),
        InboundType(
            type="review.landing_page_status",
            command=cmd.ApplyHoldSignal,
            topic=topics.REVIEWS,
            data=LandingPageStatus,
        ),
        InboundType(
            type="review.campaign_approved",
            command=cmd.ApproveCampaign,
            topic=topics.REVIEWS,
            data=Empty,
        ),
        InboundType(
            type="review.campaign_rejected",
            command=cmd.RejectCampaign,
            topic=topics.REVIEWS,
            data=CampaignRejected,
        ),
        InboundType(
            type="refund.retry", command=cmd.RetryRefund, topic=topics.COMMANDS, data=RefundRetry
        ),
        InboundType(
            type="payment.charge_succeeded",
            command=cmd.RecordChargeResult,
            topic=topics.PAYMENTS,
            data=ChargeSucceeded,
        ),
        InboundType(
            type="payment.charge_failed",
            command=cmd.RecordChargeResult,
            topic=topics.PAYMENTS,
            data=ChargeFailed,
        ),
        InboundType(
            type="payment.refund_succeeded",
            command=cmd.RecordRefundResult,
            topic=topics.PAYMENTS,
            data=RefundSucceeded,
        ),
        InboundType(
            type="payment.refund_failed",
            command=cmd.RecordRefundResult,
            topic=topics.PAYMENTS,
            data=RefundFailed,
        ),
        InboundType(
            type="delivery.reported",
            command=cmd.ReportDelivery,
            topic=topics.DELIVERY,
            data=DeliveryReported,
        ),
        InboundType(
            type="delivery.final",
            command=cmd.SettleCampaign,
            topic=topics.DELIVERY,
            data=DeliveryFinal,
        ),
        InboundType(
            type="campaign.retry_charge",
            command=cmd.RetryCharge,
            topic=topics.COMMANDS,
            data=Empty,
        ),
        InboundType(
            type="schedule.start_due", command=cmd.StartDue, topic=topics.SCHEDULE, data=ScheduleDue
        ),
        InboundType(
            type="schedule.end_due", command=cmd.EndDue, topic=topics.SCHEDULE, data=ScheduleDue
        ),
        InboundType(
            type="catalog.ad_product_upserted",
            command=cmd.UpsertAdProduct,
            topic=topics.CATALOG,
            data=AdProductUpserted,
            campaign_scoped=False,
        ),
        InboundType(
            type="catalog.ad_product_deleted",
            command=cmd.DeleteAdProduct,
            topic=topics.CATALOG,
            data=AdProductDeleted,
            campaign_scoped=False,
        ),
        InboundType(
            type="catalog.category_upserted",
            command=cmd.UpsertCategory,
            topic=topics.CATALOG,
            data=CategoryUpserted,
            campaign_scoped=False,
        ),
        InboundType(
            type="catalog.category_deleted",
            command=cmd.UpsertCategory,
            topic=topics.CATALOG,
            data=CategoryDeleted,
            campaign_scoped=False,
        ),
    )
}


def parse_subject(subject: str | None) -> UUID:
    if subject is None:
        raise ValueError("subject (the campaign id) is required")
    try:
        return UUID(subject)
    except ValueError:
        raise ValueError(f"subject must be a campaign UUID, got {subject[:80]!r}") from None


__all__ = ["INBOUND_TYPES", "CloudEvent", "InboundType", "datetime", "parse_subject"]
