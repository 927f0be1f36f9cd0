"""Wire -> service: turn one Kafka record into an `Inbound` command or an `Undecodable`.

Pure functions (no broker, no database), so every dead-letter reason is unit-tested.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.errors import Refusal
from campaign_worker.domain.model import (
    Actor,
    AdProduct,
    BillingType,
    Contact,
    FrequencyCap,
    Role,
    Targeting,
)
from campaign_worker.domain.money import Money
from campaign_worker.entrypoints import messages as m
from campaign_worker.service.inbound import (
    DeleteAdProduct,
    Inbound,
    Item,
    Source,
    Undecodable,
    UpsertAdProduct,
)


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
        value = getattr(data, name)
        convert = converters.get(name)
        changes[name] = convert(value) if convert is not None and value is not None else value
    return changes


def build_command(type_: str, event: m.CloudEvent, data: BaseModel) -> object:
    """The domain (or catalog) command a message stands for."""
    cid = m.parse_subject(event.subject) if type_.split(".")[0] != "catalog" else None
    match type_, data:
        case "campaign.create", m.CampaignCreate():
            assert cid is not None
            return cmd.CreateCampaign(
                campaign_id=cid,
                advertiser_id=data.advertiser_id,
                title=data.title,
                ad_product_id=data.ad_product_id,
                budget=_money(data.budget),
                billing_type=BillingType(data.billing_type),
                start_at=data.start_at,
                end_at=data.end_at,
                targeting=_targeting(data.targeting),
                frequency_cap=_cap(data.frequency_cap),
                contact=_contact(data.contact),
                timezone=data.timezone,
            )
        case "campaign.update", m.CampaignUpdate():
            return cmd.UpdateCampaign(campaign_id=cid, changes=_update_changes(data))  # type: ignore[arg-type]
        case "campaign.submit", _:
            return cmd.SubmitCampaign(campaign_id=cid)  # type: ignore[arg-type]
        case "campaign.pause", _:
            return cmd.PauseCampaign(campaign_id=cid)  # type: ignore[arg-type]
        case "campaign.resume", _:
            return cmd.ResumeCampaign(campaign_id=cid)  # type: ignore[arg-type]
        case "campaign.extend_end", m.CampaignExtendEnd():
            return cmd.ExtendEnd(campaign_id=cid, end_at=data.end_at)  # type: ignore[arg-type]
        case "campaign.cancel", m.CampaignCancel():
            return cmd.CancelCampaign(
                campaign_id=cid,  # type: ignore[arg-type]
                reason=data.reason,
                penalty=_money(data.penalty) if data.penalty else None,
            )
        case "review.campaign_approved", _:
            return cmd.ApproveCampaign(campaign_id=cid)  # type: ignore[arg-type]
        case "review.campaign_rejected", m.CampaignRejected():
            return cmd.RejectCampaign(campaign_id=cid, reason=data.reason)  # type: ignore[arg-type]
        case "schedule.start_due", m.ScheduleDue():
            return cmd.StartDue(campaign_id=cid, due_at=data.due_at)  # type: ignore[arg-type]
        case "schedule.end_due", m.ScheduleDue():
            return cmd.EndDue(campaign_id=cid, due_at=data.due_at)  # type: ignore[arg-type]
        case "catalog.ad_product_upserted", m.AdProductUpserted():
            return UpsertAdProduct(
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
            return DeleteAdProduct(data.ad_product_id)
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
