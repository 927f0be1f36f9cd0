"""One documented pydantic model per OUTGOING message type of the contract (v1).

The service builds each outgoing payload with the typed class of the same name in
`service/outbound.py` (a unit test ties the two together); these models describe them for
other teams: the JSON Schemas and the AsyncAPI document in
`schemas/` are generated from them (`campaign-worker schemas --write schemas/`), and an e2e
test validates the messages the worker really publishes against those schemas. Consumers must
ignore fields they do not know (forward compatibility), so the schemas allow extra fields;
a field the worker emits must still be documented here (the e2e test checks that).
"""

from __future__ import annotations

import builtins
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from campaign_worker import topics
from campaign_worker.domain.errors import RefusalCode
from campaign_worker.domain.model import BillingType, Role, Status

Amount = Annotated[str, StringConstraints(pattern=r"^-?\d{1,15}(\.\d{1,6})?$")]
CampaignId = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
]
Base64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]*={0,2}$")]


class Out(BaseModel):
    """Base of every outgoing payload model (documentation: the service emits the dataclasses
    of `service/outbound.py`, checked against these models in the unit tests)."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class MoneyOut(Out):
    """Money: a decimal string amount (exactly the currency's minor-unit digits) and a code."""

    amount: Amount = Field(description="Decimal string, never a float.", examples=["1250.00"])
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(
        description="ISO 4217 code.", examples=["EUR"]
    )


class ActorOut(Out):
    """Who caused the change."""

    role: Role = Field(description="advertiser, publisher or system.")
    id: str | None = Field(description="The actor's id (null for some system actors).")


class ScheduleOut(Out):
    """When the campaign runs: instants, and local wall-clock times when it has a time zone."""

    start_at: AwareDatetime = Field(description="RFC 3339 instant (UTC).")
    end_at: AwareDatetime = Field(description="RFC 3339 instant (UTC).")
    timezone: str | None = Field(description="IANA zone name, or null.", examples=["Europe/Berlin"])
    start_local: str | None = Field(None, description="Start in `timezone`, with its offset.")
    end_local: str | None = Field(None, description="End in `timezone`, with its offset.")


# ---------------------------------------------------------------- campaign.events


class CampaignStatusChanged(Out):
    """`campaign.status_changed`: a campaign was created (from = null) or changed status."""

    campaign_id: CampaignId = Field(description="The campaign (also the envelope's subject).")
    from_: Status | None = Field(alias="from", description="Previous status; null on creation.")
    to: Status = Field(description="New status.")
    reason: str = Field(
        description="Why: the rejection/cancel reason when given, else the trigger "
        "('created' on creation).",
        examples=["created", "submit", "Budget too small"],
    )
    trigger: str | None = Field(
        None, description="Lifecycle trigger (absent on creation).", examples=["approve"]
    )
    display_status: str = Field(
        description="Status as shown to advertisers.", examples=["Draft", "Pending", "Running"]
    )
    version: int = Field(ge=1, description="Campaign version after the change.")
    actor: ActorOut
    penalty: MoneyOut | None = Field(None, description="Cancellation penalty, when one applies.")
    due_at: AwareDatetime | None = Field(
        None, description="For time-driven transitions: when the start or end was due."
    )
    lateness_seconds: float | None = Field(
        None, ge=0, description="For time-driven transitions: how late it was applied."
    )
    schedule: ScheduleOut | None = Field(None, description="The campaign's schedule after it.")


class CampaignServingChanged(Out):
    """`campaign.serving_changed`: whether the ad server may deliver the campaign now."""

    campaign_id: CampaignId
    serving: bool = Field(description="True when the campaign may be delivered.")
    holds: list[str] = Field(
        description="Why it is held (empty when serving): no_approved_creatives, "
        "out_of_budget, billing_error, product_not_buyable, landing_page_unavailable, "
        "suspended, low_relevance.",
        examples=[["no_approved_creatives"]],
    )
    display_status: str = Field(examples=["Running"])
    reasons: list[str] | None = Field(
        None, description="Human-readable reasons, one per hold (spec section 4)."
    )
    version: int | None = Field(None, ge=1, description="Campaign version at the change.")


class CampaignUpdated(Out):
    """`campaign.updated`: fields of a campaign changed without a status change."""

    campaign_id: CampaignId
    changed: list[str] = Field(description="Names of the changed fields, sorted.")
    values: dict[str, Any] | None = Field(None, description="The new values, by field name.")
    version: int = Field(ge=1)
    actor: ActorOut | None = None
    schedule: ScheduleOut | None = None


class ExcludedCreative(Out):
    creative_id: str
    why: str = Field(description="Why the creative was not copied.")


class CopiedCreative(Out):
    source_creative_id: str
    creative_id: str = Field(description="Id of the copy.")


class CampaignDuplicated(Out):
    """`campaign.duplicated`: a campaign was copied into a new DRAFT."""

    source_campaign_id: CampaignId
    campaign_id: CampaignId = Field(description="The new campaign.")
    copied: list[str] = Field(description="Fields copied from the source.")
    reset: list[str] = Field(description="Fields reset to defaults.")
    excluded_creatives: list[ExcludedCreative]
    targeting_reset: bool
    targeting_removed: list[str] | None = Field(
        None, description="Targeting categories or groups dropped from the copy."
    )
    creatives: list[CopiedCreative] | None = Field(
        None, description="Creatives copied, with their new ids."
    )


class CreativeStatusChanged(Out):
    """`creative.status_changed`."""

    campaign_id: CampaignId
    creative_id: str
    from_: str | None = Field(alias="from", description="Previous status; null when registered.")
    to: str = Field(examples=["UNDER_REVIEW", "APPROVED"])
    reason: str | None = Field(None, examples=["registered"])


class CreativeUpdated(Out):
    """`creative.updated`: fields of a creative changed (an addition to contract v1)."""

    campaign_id: CampaignId
    creative_id: str
    changed: list[str] = Field(description="Names of the changed fields, sorted.")
    status: str = Field(description="The creative's status after the change.")


class CreativeDeleted(Out):
    """`creative.deleted`."""

    campaign_id: CampaignId
    creative_id: str


class NonBillablePart(Out):
    amount: MoneyOut
    reason: str = Field(examples=["not_live", "over_budget", "after_settlement"])


class DeliveryRecorded(Out):
    """`delivery.recorded`: a delivery report was applied to the campaign's spend."""

    campaign_id: CampaignId
    billable_spend: MoneyOut
    non_billable_spend: MoneyOut
    non_billable_reason: str | None = Field(
        None, description="Why spend was not billable: the reasons joined by ',' (null if none)."
    )
    non_billable: list[NonBillablePart] | None = Field(
        None, description="The non-billable parts, each with its reason, in rule order."
    )
    spent_total: MoneyOut
    impressions: int | None = Field(None, ge=0, description="Impressions of the reported period.")
    clicks: int | None = Field(None, ge=0, description="Clicks of the reported period.")


class CommandRejected(Out):
    """`command.rejected`: a well-formed command broke a rule; nothing changed."""

    command_id: str = Field(description="The CloudEvent id of the refused command.")
    command_type: str = Field(examples=["campaign.submit"])
    code: RefusalCode = Field(description="Stable refusal code (extend, never rename).")
    message: str = Field(description="Human-readable explanation.")
    campaign_id: CampaignId | None = Field(None, description="The campaign, when there is one.")


# ---------------------------------------------------------------- campaign.state


class StateCreativeOut(Out):
    """A creative of the campaign (deleted creatives are left out), ordered by id."""

    creative_id: str
    status: str = Field(
        examples=["APPROVED"], description="UNDER_REVIEW, APPROVED, REJECTED or PAUSED."
    )
    ad_unit_id: str


class CampaignState(Out):
    """`campaign.state`: the whole current state of one campaign, one record per change,
    keyed by campaign id on a compacted topic: read from the beginning, the latest record
    per key is the campaign's state now. `version` only grows per campaign; a subscriber
    drops a record whose version is not higher than the one it holds (the relay may
    publish a record again after a crash, and `state republish` re-sends current ones)."""

    campaign_id: CampaignId
    version: int = Field(ge=1, description="Campaign version of this state.")
    status: Status
    display_status: str = Field(examples=["Running"])
    serving: bool = Field(description="True when the ad server may deliver the campaign now.")
    holds: list[str] = Field(
        description="Why it is held (empty when serving), as in campaign.serving_changed.",
        examples=[["no_approved_creatives"]],
    )
    schedule: ScheduleOut
    budget: MoneyOut
    billing_type: BillingType
    spent_total: MoneyOut = Field(description="Billable spend so far.")
    ad_product_id: str
    advertiser_id: str
    creatives: list[StateCreativeOut]
    updated_at: AwareDatetime = Field(description="When this state was reached (RFC 3339).")


# ---------------------------------------------------------------- campaign.notifications

NotificationKind = Literal[
    "campaign_review_approved",
    "campaign_review_rejected",
    "campaign_started",
    "campaign_ended",
    "creative_review_approved",
    "creative_review_rejected",
    "billing_error",
    "out_of_budget",
    "low_relevance",
    "campaign_cancelled_by_publisher",
    "campaign_suspended",
    "campaign_reinstated",
    "review_expired",
    "statement_issued",
    "refund_issued",
]


class NotificationRequested(Out):
    """`notification.requested`: one notification to send (also sent as email)."""

    notification_id: str
    kind: NotificationKind
    to: str = Field(description="Recipient email address.", examples=["ada@example.com"])
    subject: str
    campaign_id: CampaignId
    creative_id: str | None = None
    template_data: dict[str, Any] = Field(default_factory=dict)


class NotificationOutcome(Out):
    """`notification.sent` / `notification.failed`: what became of a requested notification."""

    notification_id: str
    attempts: int = Field(ge=1)
    error: str | None = Field(None, description="Last error (for failed).")


# ---------------------------------------------------------------- campaign.settlements


class ChargeRequested(Out):
    """`payment.charge_requested`: ask the payment service to charge the advertiser."""

    campaign_id: CampaignId | None = Field(None, description="The campaign (also the subject).")
    charge_id: str
    amount: MoneyOut


class RefundRequested(Out):
    """`payment.refund_requested`: ask the payment service to refund the advertiser."""

    campaign_id: CampaignId | None = Field(None, description="The campaign (also the subject).")
    refund_id: str
    amount: MoneyOut
    reason: str
    attempt: int | None = Field(
        None, ge=1, description="Set when an operator retries a failed refund (refund.retry)."
    )


class StatementIssued(Out):
    """`settlement.statement_issued`: the final statement of a campaign."""

    campaign_id: CampaignId | None = Field(None, description="The campaign (also the subject).")
    statement_id: str
    billing_type: BillingType
    booked_amount: MoneyOut
    spent_amount: MoneyOut
    penalty_amount: MoneyOut
    tax_amount: MoneyOut
    refund_amount: MoneyOut
    final_amount: MoneyOut
    tax_rate: Amount = Field(examples=["0.10"])
    charged_amount: MoneyOut | None = Field(
        None, description="Card charges confirmed in all (refund = charged - final)."
    )


# ---------------------------------------------------------------- campaign.dlq


class DeadLetterError(Out):
    code: str = Field(
        description="not_json, not_cloudevent, unknown_type, wrong_topic, invalid_data, "
        "too_large or processing_failed.",
        examples=["not_json"],
    )
    message: str


class DeadLetterSource(Out):
    topic: str = Field(description="Physical topic the record was read from.")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class DeadLetterHeader(Out):
    key: str
    value: Base64 = Field(description="Header value bytes, base64.")


class DeadLettered(Out):
    """`dlq.dead_lettered`: a message the worker could not understand, byte for byte."""

    original: Base64 = Field(description="The original record value, base64.")
    error: DeadLetterError
    source: DeadLetterSource
    headers: list[DeadLetterHeader] = Field(description="The original record headers.")
    key: Base64 | None = Field(description="The original record key, base64 (null if none).")


# ---------------------------------------------------------------- registry


class OutboundType(BaseModel):
    """What the worker publishes: type name -> topic and payload model."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    type: str
    topic: str
    data: builtins.type[Out]  # `type` alone would name the field above
    campaign_scoped: bool = True


OUTBOUND_TYPES: dict[str, OutboundType] = {
    t.type: t
    for t in (
        OutboundType(
            type="campaign.status_changed", topic=topics.EVENTS, data=CampaignStatusChanged
        ),
        OutboundType(
            type="campaign.serving_changed", topic=topics.EVENTS, data=CampaignServingChanged
        ),
        OutboundType(type="campaign.updated", topic=topics.EVENTS, data=CampaignUpdated),
        OutboundType(type="campaign.duplicated", topic=topics.EVENTS, data=CampaignDuplicated),
        OutboundType(
            type="creative.status_changed", topic=topics.EVENTS, data=CreativeStatusChanged
        ),
        OutboundType(type="creative.updated", topic=topics.EVENTS, data=CreativeUpdated),
        OutboundType(type="creative.deleted", topic=topics.EVENTS, data=CreativeDeleted),
        OutboundType(type="delivery.recorded", topic=topics.EVENTS, data=DeliveryRecorded),
        OutboundType(type="command.rejected", topic=topics.EVENTS, data=CommandRejected),
        OutboundType(
            type="notification.requested", topic=topics.NOTIFICATIONS, data=NotificationRequested
        ),
        OutboundType(
            type="notification.sent", topic=topics.NOTIFICATIONS, data=NotificationOutcome
        ),
        OutboundType(
            type="notification.failed", topic=topics.NOTIFICATIONS, data=NotificationOutcome
        ),
        OutboundType(
            type="payment.charge_requested", topic=topics.SETTLEMENTS, data=ChargeRequested
        ),
        OutboundType(
            type="payment.refund_requested", topic=topics.SETTLEMENTS, data=RefundRequested
        ),
        OutboundType(
            type="settlement.statement_issued", topic=topics.SETTLEMENTS, data=StatementIssued
        ),
        OutboundType(
            type="dlq.dead_lettered", topic=topics.DLQ, data=DeadLettered, campaign_scoped=False
        ),
        OutboundType(type="campaign.state", topic=topics.STATE, data=CampaignState),
    )
}


class OutgoingEnvelope(BaseModel):
    """CloudEvents 1.0 envelope of every message the worker publishes."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: str = Field(description="Unique per message; consumers dedupe by it.")
    source: str = Field(examples=["/campaign-worker"])
    type: str
    subject: str | None = Field(
        None, description="The campaign id for campaign messages (absent on dead letters)."
    )
    time: AwareDatetime = Field(description="When the worker produced it (RFC 3339).")
    datacontenttype: Literal["application/json"]
    causationid: str | None = Field(
        None,
        description="Id of the message that caused this one (absent on dead letters and on "
        "campaign.state records that `state republish` wrote).",
    )
    correlationid: str | None = Field(None, description="Copied from the causing message.")
    data: dict[str, Any]
