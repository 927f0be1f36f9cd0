"""Every message the worker publishes, one typed payload per type.

Each class here is the payload (`data`) of one outgoing type of the contract and carries its
type name and topic. Its name is the name of the pydantic model that documents it in
`entrypoints/messages_out.py`, and a unit test holds the two together: every outgoing type
has exactly one class here, the keys a class writes are the fields its model documents, and
payloads built from sample values validate against the model. So the generated `schemas/`
cannot drift from what is sent, while the message path pays for plain dataclasses and one
dict per event (no pydantic validation per outgoing message).

`data()` writes the wire form: money as `{"amount": "1250.00", "currency": "EUR"}`, instants
in RFC 3339 UTC, enums as their values. Optional fields that the contract marks as absent
(rather than null) when they do not apply are left out when None.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID
from zoneinfo import ZoneInfo

from campaign_worker import topics
from campaign_worker.domain.model import Actor, BillingType, Campaign, Creative, Status
from campaign_worker.domain.money import Money
from campaign_worker.domain.serving import Verdict
from campaign_worker.service.envelope import CONTENT_TYPE, OutboxMessage, event, to_wire
from campaign_worker.service.unit_of_work import NotificationRequest


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Base of the payloads: the type name and topic of the contract."""

    TYPE: ClassVar[str]
    TOPIC: ClassVar[str]

    def data(self) -> dict[str, Any]:
        raise NotImplementedError


def _money(value: Money) -> dict[str, str]:
    return value.to_wire()


def _actor(actor: Actor) -> dict[str, Any]:
    return {"role": actor.role.value, "id": actor.id}


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a campaign runs: instants, and local wall-clock times when it has a time zone."""

    start_at: datetime
    end_at: datetime
    timezone: str | None

    @classmethod
    def of(cls, campaign: Campaign) -> Schedule:
        return cls(campaign.start_at, campaign.end_at, campaign.timezone)

    def data(self) -> dict[str, Any]:
        view: dict[str, Any] = {
            "start_at": to_wire(self.start_at),
            "end_at": to_wire(self.end_at),
            "timezone": self.timezone,
        }
        if self.timezone:
            zone = ZoneInfo(self.timezone)
            view["start_local"] = self.start_at.astimezone(zone).isoformat()
            view["end_local"] = self.end_at.astimezone(zone).isoformat()
        return view


# ---------------------------------------------------------------- campaign.events


@dataclass(frozen=True, slots=True)
class CampaignStatusChanged(Outgoing):
    """A campaign was created (`from_` None, no trigger) or changed status."""

    TYPE = "campaign.status_changed"
    TOPIC = topics.EVENTS

    campaign_id: UUID
    from_: Status | None
    to: Status
    reason: str
    display_status: str
    version: int
    actor: Actor
    schedule: Schedule
    trigger: str | None = None
    penalty: Money | None = None
    due_at: datetime | None = None
    lateness_seconds: float | None = None

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "campaign_id": str(self.campaign_id),
            "from": self.from_.value if self.from_ is not None else None,
            "to": self.to.value,
            "reason": self.reason,
        }
        if self.trigger is not None:
            d["trigger"] = self.trigger
        d["display_status"] = self.display_status
        d["version"] = self.version
        d["actor"] = _actor(self.actor)
        if self.penalty is not None:
            d["penalty"] = _money(self.penalty)
        if self.lateness_seconds is not None:
            d["due_at"] = to_wire(self.due_at)
            d["lateness_seconds"] = self.lateness_seconds
        d["schedule"] = self.schedule.data()
        return d


@dataclass(frozen=True, slots=True)
class CampaignServingChanged(Outgoing):
    TYPE = "campaign.serving_changed"
    TOPIC = topics.EVENTS

    campaign_id: UUID
    serving: bool
    holds: Sequence[str]
    display_status: str
    reasons: Sequence[str]
    version: int

    def data(self) -> dict[str, Any]:
        return {
            "campaign_id": str(self.campaign_id),
            "serving": self.serving,
            "holds": list(self.holds),
            "display_status": self.display_status,
            "reasons": list(self.reasons),
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class CampaignUpdated(Outgoing):
    TYPE = "campaign.updated"
    TOPIC = topics.EVENTS

    campaign_id: UUID
    changes: Mapping[str, object]  # field name -> new domain value
    version: int
    actor: Actor
    schedule: Schedule

    def data(self) -> dict[str, Any]:
        return {
            "campaign_id": str(self.campaign_id),
            "changed": sorted(self.changes),
            "values": to_wire(dict(self.changes)),
            "version": self.version,
            "actor": _actor(self.actor),
            "schedule": self.schedule.data(),
        }


@dataclass(frozen=True, slots=True)
class CampaignDuplicated(Outgoing):
    TYPE = "campaign.duplicated"
    TOPIC = topics.EVENTS

    source_campaign_id: UUID
    campaign_id: UUID
    copied: Sequence[str]
    reset: Sequence[str]
    excluded_creatives: Sequence[tuple[str, str]]  # (creative id, why)
    targeting_reset: bool
    targeting_removed: Sequence[str]
    creatives: Sequence[tuple[str, str]]  # (source creative id, id of the copy)

    def data(self) -> dict[str, Any]:
        return {
            "source_campaign_id": str(self.source_campaign_id),
            "campaign_id": str(self.campaign_id),
            "copied": list(self.copied),
            "reset": list(self.reset),
            "excluded_creatives": [
                {"creative_id": c, "why": why} for c, why in self.excluded_creatives
            ],
            "targeting_reset": self.targeting_reset,
            "targeting_removed": list(self.targeting_removed),
            "creatives": [{"source_creative_id": s, "creative_id": n} for s, n in self.creatives],
        }


@dataclass(frozen=True, slots=True)
class CreativeStatusChanged(Outgoing):
    TYPE = "creative.status_changed"
    TOPIC = topics.EVENTS

    campaign_id: UUID
    creative_id: str
    from_: str | None
    to: str
    reason: str | None

    def data(self) -> dict[str, Any]:
        return {
            "campaign_id": str(self.campaign_id),
            "creative_id": self.creative_id,
            "from": self.from_,
            "to": self.to,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CreativeUpdated(Outgoing):
    TYPE = "creative.updated"
    TOPIC = topics.EVENTS

    campaign_id: UUID
    creative_id: str
    changed: Sequence[str]
    status: str

    def data(self) -> dict[str, Any]:
        return {
            "campaign_id": str(self.campaign_id),
            "creative_id": self.creative_id,
            "changed": sorted(self.changed),
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class CreativeDeleted(Outgoing):
    TYPE = "creative.deleted"
    TOPIC = topics.EVENTS

    campaign_id: UUID
    creative_id: str

    def data(self) -> dict[str, Any]:
        return {"campaign_id": str(self.campaign_id), "creative_id": self.creative_id}


@dataclass(frozen=True, slots=True)
class DeliveryRecorded(Outgoing):
    TYPE = "delivery.recorded"
    TOPIC = topics.EVENTS

    campaign_id: UUID
    billable_spend: Money
    non_billable_spend: Money
    non_billable_reason: str | None
    non_billable: Sequence[tuple[Money, str]]  # (amount, reason), in rule order
    spent_total: Money
    impressions: int
    clicks: int

    def data(self) -> dict[str, Any]:
        return {
            "campaign_id": str(self.campaign_id),
            "billable_spend": _money(self.billable_spend),
            "non_billable_spend": _money(self.non_billable_spend),
            "non_billable_reason": self.non_billable_reason,
            "non_billable": [
                {"amount": _money(amount), "reason": reason} for amount, reason in self.non_billable
            ],
            "spent_total": _money(self.spent_total),
            "impressions": self.impressions,
            "clicks": self.clicks,
        }


@dataclass(frozen=True, slots=True)
class CommandRejected(Outgoing):
    TYPE = "command.rejected"
    TOPIC = topics.EVENTS

    command_id: str
    command_type: str
    code: str
    message: str
    campaign_id: UUID | None

    def data(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "command_type": self.command_type,
            "code": self.code,
            "message": self.message,
            "campaign_id": str(self.campaign_id) if self.campaign_id is not None else None,
        }


# ---------------------------------------------------------------- campaign.state


@dataclass(frozen=True, slots=True)
class StateCreative:
    """A creative as the campaign's state shows it (deleted creatives are left out)."""

    creative_id: str
    status: str
    ad_unit_id: str


@dataclass(frozen=True, slots=True)
class CampaignState(Outgoing):
    """The whole current state of one campaign, the latest record per campaign id winning on
    the compacted `campaign.state` topic. `version` grows with every change the record
    shows (the campaign's own fields, its creatives, holds, spend and charge), so a
    subscriber drops a record whose version is not higher than the one it holds."""

    TYPE = "campaign.state"
    TOPIC = topics.STATE

    campaign_id: UUID
    version: int
    status: Status
    display_status: str
    serving: bool
    holds: Sequence[str]
    schedule: Schedule
    budget: Money
    billing_type: BillingType
    spent_total: Money
    ad_product_id: str
    advertiser_id: str
    creatives: Sequence[StateCreative]
    updated_at: datetime

    @classmethod
    def of(
        cls,
        campaign: Campaign,
        creatives: Iterable[Creative],
        verdict: Verdict,
        spent: Money | None,
        updated_at: datetime,
    ) -> CampaignState:
        """The state of `campaign` with its creatives (tombstones included: they are left
        out here), its serving verdict and its billable spend so far (None: nothing spent)."""
        return cls(
            campaign_id=campaign.id,
            version=campaign.version,
            status=campaign.status,
            display_status=verdict.display_status,
            serving=verdict.serving,
            holds=[h.value for h in verdict.holds],
            schedule=Schedule.of(campaign),
            budget=campaign.budget,
            billing_type=campaign.billing_type,
            spent_total=spent if spent is not None else Money.zero(campaign.budget.currency),
            ad_product_id=campaign.ad_product_id,
            advertiser_id=campaign.advertiser_id,
            creatives=[
                StateCreative(c.id, c.status.value, c.ad_unit_id)
                for c in sorted(creatives, key=lambda c: c.id)
                if not c.deleted
            ],
            updated_at=updated_at,
        )

    def data(self) -> dict[str, Any]:
        return {
            "campaign_id": str(self.campaign_id),
            "version": self.version,
            "status": self.status.value,
            "display_status": self.display_status,
            "serving": self.serving,
            "holds": list(self.holds),
            "schedule": self.schedule.data(),
            "budget": _money(self.budget),
            "billing_type": self.billing_type.value,
            "spent_total": _money(self.spent_total),
            "ad_product_id": self.ad_product_id,
            "advertiser_id": self.advertiser_id,
            "creatives": [
                {"creative_id": c.creative_id, "status": c.status, "ad_unit_id": c.ad_unit_id}
                for c in self.creatives
            ],
            "updated_at": to_wire(self.updated_at),
        }


# ---------------------------------------------------------------- campaign.notifications


@dataclass(frozen=True, slots=True)
class NotificationRequested(Outgoing):
    TYPE = "notification.requested"
    TOPIC = topics.NOTIFICATIONS

    notification_id: UUID
    kind: str
    to: str
    subject: str
    campaign_id: UUID
    creative_id: str | None
    template_data: Mapping[str, Any]  # already in wire form

    def data(self) -> dict[str, Any]:
        return {
            "notification_id": str(self.notification_id),
            "kind": self.kind,
            "to": self.to,
            "subject": self.subject,
            "campaign_id": str(self.campaign_id),
            "creative_id": self.creative_id,
            "template_data": dict(self.template_data),
        }


@dataclass(frozen=True, slots=True)
class NotificationSent(Outgoing):
    TYPE = "notification.sent"
    TOPIC = topics.NOTIFICATIONS

    notification_id: UUID
    attempts: int
    error: str | None

    def data(self) -> dict[str, Any]:
        return {
            "notification_id": str(self.notification_id),
            "attempts": self.attempts,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class NotificationFailed(NotificationSent):
    TYPE = "notification.failed"


# ---------------------------------------------------------------- campaign.settlements


@dataclass(frozen=True, slots=True)
class ChargeRequested(Outgoing):
    TYPE = "payment.charge_requested"
    TOPIC = topics.SETTLEMENTS

    campaign_id: UUID
    charge_id: str
    amount: Money

    def data(self) -> dict[str, Any]:
        return {
            "campaign_id": str(self.campaign_id),
            "charge_id": self.charge_id,
            "amount": _money(self.amount),
        }


@dataclass(frozen=True, slots=True)
class RefundRequested(Outgoing):
    TYPE = "payment.refund_requested"
    TOPIC = topics.SETTLEMENTS

    campaign_id: UUID
    refund_id: str
    amount: Money
    reason: str
    attempt: int | None = None  # set when an operator retries a failed refund

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "campaign_id": str(self.campaign_id),
            "refund_id": self.refund_id,
            "amount": _money(self.amount),
            "reason": self.reason,
        }
        if self.attempt is not None:
            d["attempt"] = self.attempt
        return d


@dataclass(frozen=True, slots=True)
class StatementIssued(Outgoing):
    TYPE = "settlement.statement_issued"
    TOPIC = topics.SETTLEMENTS

    campaign_id: UUID
    statement_id: str
    billing_type: BillingType
    booked_amount: Money
    spent_amount: Money
    penalty_amount: Money
    tax_amount: Money
    refund_amount: Money
    final_amount: Money
    tax_rate: str
    charged_amount: Money

    def data(self) -> dict[str, Any]:
        return {
            "campaign_id": str(self.campaign_id),
            "statement_id": self.statement_id,
            "billing_type": self.billing_type.value,
            "booked_amount": _money(self.booked_amount),
            "spent_amount": _money(self.spent_amount),
            "penalty_amount": _money(self.penalty_amount),
            "tax_amount": _money(self.tax_amount),
            "refund_amount": _money(self.refund_amount),
            "final_amount": _money(self.final_amount),
            "tax_rate": self.tax_rate,
            "charged_amount": _money(self.charged_amount),
        }


# ---------------------------------------------------------------- campaign.dlq


@dataclass(frozen=True, slots=True)
class DeadLettered(Outgoing):
    """The original record byte for byte (base64), the error and where it came from."""

    TYPE = "dlq.dead_lettered"
    TOPIC = topics.DLQ

    original: str  # base64
    code: str
    message: str
    topic: str  # physical topic it was read from
    partition: int
    offset: int
    headers: Sequence[tuple[str, str]] = field(default=())  # (key, base64 value)
    key: str | None = None  # base64

    def data(self) -> dict[str, Any]:
        return {
            "original": self.original,
            "error": {"code": self.code, "message": self.message},
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
            "headers": [{"key": k, "value": v} for k, v in self.headers],
            "key": self.key,
        }


# Every payload class, by outgoing type (the unit test checks it against messages_out).
OUTGOING: Mapping[str, type[Outgoing]] = {
    cls.TYPE: cls
    for cls in (
        CampaignStatusChanged,
        CampaignServingChanged,
        CampaignUpdated,
        CampaignDuplicated,
        CreativeStatusChanged,
        CreativeUpdated,
        CreativeDeleted,
        DeliveryRecorded,
        CommandRejected,
        NotificationRequested,
        NotificationSent,
        NotificationFailed,
        ChargeRequested,
        RefundRequested,
        StatementIssued,
        DeadLettered,
        CampaignState,
    )
}


def to_outbox(
    payload: Outgoing,
    *,
    subject: str | None,
    now: datetime,
    causation_id: str | None,
    correlation_id: str | None,
    id: str | None = None,
) -> OutboxMessage:
    """The payload in its CloudEvents envelope, as an outbox row on its type's topic."""
    return event(
        topic=payload.TOPIC,
        type=payload.TYPE,
        subject=subject,
        data=payload.data(),
        now=now,
        causation_id=causation_id,
        correlation_id=correlation_id,
        id=id,
    )


def dead_letter(
    *,
    physical_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    headers: tuple[tuple[str, bytes], ...],
    code: str,
    message: str,
    now: datetime,
) -> OutboxMessage:
    """The DLQ record: original bytes (base64), the error, the source coordinates and the
    original headers, keyed by the original key. The original headers also ride along as
    Kafka headers so tools that only look at headers still see them."""
    payload = DeadLettered(
        original=_b64(value),
        code=code,
        message=message,
        topic=physical_topic,
        partition=partition,
        offset=offset,
        headers=tuple((k, _b64(v)) for k, v in headers),
        key=_b64(key) if key is not None else None,
    )
    return event(
        topic=payload.TOPIC,
        type=payload.TYPE,
        subject=None,
        data=payload.data(),
        now=now,
        causation_id=None,
        correlation_id=None,
        key=key,
        headers=(
            ("content-type", CONTENT_TYPE.encode()),
            *((f"dlq-original-{k}", v) for k, v in headers),
        ),
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def notification_requested(n: NotificationRequest, now: datetime) -> OutboxMessage:
    """The contract's `notification.requested`; its CloudEvent id is the notification id, so
    consumers that dedupe by id see one request per notification."""
    return to_outbox(
        NotificationRequested(
            notification_id=n.id,
            kind=n.kind,
            to=n.recipient,
            subject=n.subject,
            campaign_id=n.campaign_id,
            creative_id=n.creative_id,
            template_data=n.template_data,
        ),
        subject=str(n.campaign_id),
        now=now,
        causation_id=n.cause_id,
        correlation_id=n.correlation_id,
        id=str(n.id),
    )


def notification_outcome(
    *,
    sent: bool,
    notification_id: UUID,
    campaign_id: UUID,
    attempts: int,
    error: str | None,
    correlation_id: str | None,
    now: datetime,
) -> OutboxMessage:
    """`notification.sent` / `notification.failed`, caused by the request (whose id is the
    notification id)."""
    kind = NotificationSent if sent else NotificationFailed
    return to_outbox(
        kind(notification_id=notification_id, attempts=attempts, error=error),
        subject=str(campaign_id),
        now=now,
        causation_id=str(notification_id),
        correlation_id=correlation_id,
    )
