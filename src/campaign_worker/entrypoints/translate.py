"""Wire -> service: turn one Kafka record into an `Inbound` command or an `Undecodable`.

Pure functions (no broker, no database), so every dead-letter reason is unit-tested.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.errors import Refusal
from campaign_worker.domain.model import (
    Actor,
    AdProduct,
    BillingType,
    CategoryState,
    Contact,
    CreativeContent,
    FrequencyCap,
    Role,
    Targeting,
)
from campaign_worker.domain.money import Money
from campaign_worker.domain.serving import HoldSignal, landing_page_signal
from campaign_worker.domain.timezones import local_to_instant
from campaign_worker.entrypoints import messages as m
from campaign_worker.service.inbound import Inbound, Item, Source, Undecodable


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


def _money(value: m.MoneyIn) -> Money:
    try:
        return Money.of(value.decimal(), value.currency)
    except Refusal as refusal:
        raise _Refused(refusal) from None


def _targeting(value: m.TargetingIn) -> Targeting:
    return Targeting(categories=tuple(value.categories), groups=tuple(value.groups))


def _cap(value: m.FrequencyCapIn | None) -> FrequencyCap | None:
    return FrequencyCap(impressions=value.impressions, per=value.per) if value else None


def _contact(value: m.ContactIn) -> Contact:
    return Contact(name=value.name, email=value.email)


def _instant(data: m.CampaignCreate | m.CampaignUpdate, name: str) -> datetime | None:
    """`<name>_at`, or `<name>_local` converted in the message's time zone (DST-safe)."""
    local = getattr(data, f"{name}_local")
    if local is None:
        return getattr(data, f"{name}_at")  # type: ignore[no-any-return]
    assert data.timezone is not None  # the message model requires it with a local time
    try:
        return local_to_instant(f"{name}_local", local, data.timezone)
    except Refusal as refusal:  # e.g. a time zone that is not one ("Europe" is a folder)
        raise _Refused(refusal) from None


def _required_instant(data: m.CampaignCreate, name: str) -> datetime:
    instant = _instant(data, name)
    assert instant is not None  # CampaignCreate requires one of the two forms
    return instant


def _update_changes(data: m.CampaignUpdate) -> dict[str, object]:
    converters: dict[str, Callable[[Any], object]] = {
        "budget": _money,
        "billing_type": BillingType,
        "targeting": _targeting,
        "frequency_cap": _cap,
        "contact": _contact,
    }
    changes: dict[str, object] = {}
    for name in data.model_fields_set:
        if name in ("start_local", "end_local", "start_at", "end_at"):
            changes[name[: name.index("_")] + "_at"] = _instant(data, name[: name.index("_")])
            continue
        value = getattr(data, name)
        convert = converters.get(name)
        changes[name] = convert(value) if convert is not None and value is not None else value
    return changes


_NO_CAMPAIGN = UUID(int=0)


def build_command(type_: str, event: m.CloudEvent, data: BaseModel) -> cmd.Command:
    """The command a message stands for (`INBOUND_TYPES[type_].command`; a unit test checks
    every type against it)."""
    # catalog messages are keyed by product or category, not by a campaign
    cid = m.parse_subject(event.subject) if type_.split(".")[0] != "catalog" else _NO_CAMPAIGN
    match type_, data:
        case "campaign.create", m.CampaignCreate():
            return cmd.CreateCampaign(
                campaign_id=cid,
                advertiser_id=data.advertiser_id,
                title=data.title,
                ad_product_id=data.ad_product_id,
                budget=_money(data.budget),
                billing_type=BillingType(data.billing_type),
                start_at=_required_instant(data, "start"),
                end_at=_required_instant(data, "end"),
                targeting=_targeting(data.targeting),
                frequency_cap=_cap(data.frequency_cap),
                contact=_contact(data.contact),
                timezone=data.timezone,
            )
        case "campaign.update", m.CampaignUpdate():
            return cmd.UpdateCampaign(campaign_id=cid, changes=_update_changes(data))
        case "campaign.submit", _:
            return cmd.SubmitCampaign(campaign_id=cid)
        case "campaign.pause", _:
            return cmd.PauseCampaign(campaign_id=cid)
        case "campaign.resume", _:
            return cmd.ResumeCampaign(campaign_id=cid)
        case "campaign.extend_end", m.CampaignExtendEnd():
            return cmd.ExtendEnd(campaign_id=cid, end_at=data.end_at)
        case "campaign.cancel", m.CampaignCancel():
            return cmd.CancelCampaign(
                campaign_id=cid,
                reason=data.reason,
                penalty=_money(data.penalty) if data.penalty else None,
            )
        case "review.campaign_approved", _:
            return cmd.ApproveCampaign(campaign_id=cid)
        case "review.campaign_rejected", m.CampaignRejected():
            return cmd.RejectCampaign(campaign_id=cid, reason=data.reason)
        case "schedule.start_due", m.ScheduleDue():
            return cmd.StartDue(campaign_id=cid, due_at=data.due_at)
        case "schedule.end_due", m.ScheduleDue():
            return cmd.EndDue(campaign_id=cid, due_at=data.due_at)
        case "catalog.ad_product_upserted", m.AdProductUpserted():
            return cmd.UpsertAdProduct(
                AdProduct(
                    id=data.ad_product_id,
                    name=data.name,
                    unit_ids=tuple(data.unit_ids),
                    unit_set_valid=data.unit_set_valid,
                    buyable=data.buyable,
                    deleted=False,
                )
            )
        case "catalog.ad_product_deleted", m.AdProductDeleted():
            return cmd.DeleteAdProduct(data.ad_product_id)
        case "catalog.category_upserted", m.CategoryUpserted():
            state = CategoryState.ACTIVE if data.active else CategoryState.DEACTIVATED
            return cmd.UpsertCategory(data.category_id, state)
        case "catalog.category_deleted", m.CategoryDeleted():
            return cmd.UpsertCategory(data.category_id, CategoryState.DELETED)
        case "campaign.duplicate", m.CampaignDuplicate():
            return cmd.DuplicateCampaign(cid, data.new_campaign_id)
        case "creative.create", m.CreativeCreate():
            return cmd.CreateCreative(
                campaign_id=cid,
                creative_id=data.creative_id,
                name=data.name,
                ad_unit_id=data.ad_unit_id,
                content=CreativeContent(**data.content.model_dump()),
            )
        case "creative.update", m.CreativeUpdate():
            changes: dict[str, object] = {}
            if "name" in data.model_fields_set:
                changes["name"] = data.name
            if "ad_unit_id" in data.model_fields_set:
                changes["ad_unit_id"] = data.ad_unit_id
            if data.content is not None:
                changes["content"] = data.content.model_dump(exclude_unset=True)
            return cmd.UpdateCreative(
                campaign_id=cid,
                creative_id=data.creative_id,
                changes=changes,
            )
        case "creative.delete", m.CreativeRef():
            return cmd.DeleteCreative(campaign_id=cid, creative_id=data.creative_id)
        case "creative.pause", m.CreativeRef():
            return cmd.PauseCreative(campaign_id=cid, creative_id=data.creative_id)
        case "creative.resume", m.CreativeRef():
            return cmd.ResumeCreative(campaign_id=cid, creative_id=data.creative_id)
        case "review.creative_approved", m.CreativeRef():
            return cmd.ApproveCreative(campaign_id=cid, creative_id=data.creative_id)
        case "review.creative_rejected", m.CreativeRejected():
            return cmd.RejectCreative(
                campaign_id=cid,
                creative_id=data.creative_id,
                reason=data.reason,
            )
        case "payment.charge_succeeded", m.ChargeSucceeded():
            return cmd.RecordChargeResult(cid, data.charge_id, True, amount=_money(data.amount))
        case "payment.charge_failed", m.ChargeFailed():
            return cmd.RecordChargeResult(cid, data.charge_id, False, reason=data.reason)
        case "payment.refund_succeeded", m.RefundSucceeded():
            amount = _money(data.amount) if data.amount else None
            return cmd.RecordRefundResult(cid, data.refund_id, True, amount=amount)
        case "payment.refund_failed", m.RefundFailed():
            return cmd.RecordRefundResult(cid, data.refund_id, False, reason=data.reason)
        case "refund.retry", m.RefundRetry():
            return cmd.RetryRefund(cid, data.refund_id)
        case "delivery.reported", m.DeliveryReported():
            return cmd.ReportDelivery(
                campaign_id=cid,
                period_start=data.period_start,
                period_end=data.period_end,
                impressions=data.impressions,
                clicks=data.clicks,
                spend=_money(data.spend),
            )
        case "delivery.final", _:
            return cmd.SettleCampaign(campaign_id=cid, final=True)
        case "campaign.retry_charge", _:
            return cmd.RetryCharge(campaign_id=cid)
        case "review.campaign_suspended", m.CampaignSuspended():
            return cmd.ApplyHoldSignal(cid, HoldSignal.SUSPENDED, data.reason)
        case "review.campaign_reinstated", _:
            return cmd.ApplyHoldSignal(cid, HoldSignal.REINSTATED)
        case "review.landing_page_status", m.LandingPageStatus():
            return cmd.ApplyHoldSignal(cid, landing_page_signal(data.available))
    raise AssertionError(f"no command builder for {type_}")  # registry and builder disagree


def _errors(error: ValidationError) -> str:
    parts = []
    for e in error.errors(include_url=False, include_input=False)[:10]:
        where = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def translate(source: Source, *, max_bytes: int) -> Item:
    """Classify one record. Never raises for bad input: that is what `Undecodable` is for."""

    def dead(code: str, message: str, event: m.CloudEvent | None = None) -> Undecodable:
        return Undecodable(
            source=source,
            code=code,
            message=message,
            message_id=event.id if event else None,
            type=event.type if event else None,
        )

    if len(source.value) > max_bytes:
        return dead("too_large", f"record of {len(source.value)} bytes exceeds {max_bytes}")
    try:
        raw = json.loads(source.value)
    except RecursionError:  # a small record can nest deeper than the parser's stack
        return dead("not_json", "JSON nested too deeply to be a message")
    except (UnicodeDecodeError, ValueError) as error:
        return dead("not_json", f"not UTF-8 JSON: {error}")
    if not isinstance(raw, dict):
        return dead("not_cloudevent", f"expected a JSON object, got {type(raw).__name__}")
    try:
        event = m.CloudEvent.model_validate(raw)
    except ValidationError as error:
        return dead("not_cloudevent", f"invalid CloudEvents envelope: {_errors(error)}")
    spec = m.INBOUND_TYPES.get(event.type)
    if spec is None:
        return dead("unknown_type", f"unknown message type {event.type!r}", event)
    if spec.topic != source.topic:
        return dead(
            "wrong_topic",
            f"type {event.type!r} belongs on {spec.topic!r}, not {source.topic!r}",
            event,
        )
    try:
        data = spec.data.model_validate(event.data or {})
    except ValidationError as error:
        return dead("invalid_data", f"invalid data for {event.type}: {_errors(error)}", event)
    if spec.campaign_scoped and event.actorrole is None:
        return dead("invalid_data", "actorrole is required for campaign messages", event)
    actor = Actor(role=Role(event.actorrole or "publisher"), id=event.actorid)
    try:
        payload = build_command(event.type, event, data)
        refusal = None
    except ValueError as error:  # bad subject
        return dead("invalid_data", str(error), event)
    except _Refused as refused:
        payload, refusal = None, refused.refusal
    return Inbound(
        message_id=event.id,
        type=event.type,
        source=source,
        actor=actor,
        correlation_id=event.correlationid,
        campaign_id=(m.parse_subject(event.subject) if spec.campaign_scoped else None),
        payload=payload,
        time=event.time,
        refusal=refusal,
    )
