"""Wire -> command translation: every dead-letter reason, and what reaches the service."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.commands import UpsertAdProduct
from campaign_worker.domain.errors import RefusalCode
from campaign_worker.domain.model import Role
from campaign_worker.entrypoints.translate import translate
from campaign_worker.service.inbound import Inbound, Source, Undecodable

CID = str(uuid.uuid4())


def envelope(type_: str, data: Any = None, **extra: Any) -> dict[str, Any]:
    e = {
        "specversion": "1.0",
        "id": "m-1",
        "source": "/t",
        "type": type_,
        "subject": CID,
        "actorrole": "advertiser",
        "actorid": "adv-1",
        "data": data if data is not None else {},
    }
    e.update(extra)
    return e


CREATE = {
    "advertiser_id": "adv-1",
    "title": "T",
    "ad_product_id": "p",
    "budget": {"amount": "10.00", "currency": "EUR"},
    "billing_type": "card",
    "start_at": "2030-01-01T00:00:00Z",
    "end_at": "2030-01-02T00:00:00+01:00",
    "contact": {"name": "A", "email": "a@example.com"},
}


def run(
    value: bytes | dict[str, Any], topic: str = "campaign.commands", max_bytes: int = 10_000
) -> Any:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return translate(Source(topic, 0, 7, b"k", raw), max_bytes=max_bytes)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"\xff\xfe", "not_json"),
        (b"{not json", "not_json"),
        (b'"a string"', "not_cloudevent"),
        ({"id": "x"}, "not_cloudevent"),
        (envelope("campaign.create", CREATE, specversion="0.3"), "not_cloudevent"),
        (envelope("campaign.create", CREATE, actorid=None), "not_cloudevent"),
        (envelope("campaign.frobnicate"), "unknown_type"),
        (envelope("review.campaign_approved"), "wrong_topic"),
        (
            envelope("campaign.create", {**CREATE, "budget": {"amount": 10.5, "currency": "EUR"}}),
            "invalid_data",
        ),
        (
            envelope("campaign.create", {**CREATE, "budget": {"amount": "1e3", "currency": "EUR"}}),
            "invalid_data",
        ),
        (
            envelope("campaign.create", {**CREATE, "start_at": "2030-01-01T00:00:00"}),
            "invalid_data",
        ),
        (
            envelope("campaign.create", {k: v for k, v in CREATE.items() if k != "contact"}),
            "invalid_data",
        ),
        (envelope("campaign.submit", subject="nope"), "invalid_data"),
        (envelope("campaign.update", {}), "invalid_data"),
        (envelope("campaign.submit", actorrole=None), "invalid_data"),
    ],
)
def test_malformed_messages_are_dead_lettered_with_a_code(value: Any, code: str) -> None:
    item = run(value)
    assert isinstance(item, Undecodable)
    assert item.code == code, item.message
    assert item.message


def test_a_message_larger_than_the_limit_is_dead_lettered_unread() -> None:
    item = run(envelope("campaign.submit"), max_bytes=50)
    assert isinstance(item, Undecodable) and item.code == "too_large"


def test_unknown_extra_fields_are_ignored() -> None:
    item = run(envelope("campaign.create", {**CREATE, "future_field": 1}, extension="x"))
    assert isinstance(item, Inbound)
    assert isinstance(item.payload, cmd.CreateCampaign)
    assert item.payload.budget.amount == Decimal("10.00")
    assert item.actor.role is Role.ADVERTISER and item.actor.id == "adv-1"
    assert str(item.campaign_id) == CID


def test_unknown_currency_is_a_refusal_not_a_dead_letter() -> None:
    item = run(
        envelope("campaign.create", {**CREATE, "budget": {"amount": "1", "currency": "XYZ"}})
    )
    assert isinstance(item, Inbound)
    assert item.refusal is not None and item.refusal.code is RefusalCode.VALIDATION_FAILED


def test_update_carries_only_the_fields_that_were_sent() -> None:
    item = run(envelope("campaign.update", {"title": "New", "frequency_cap": None}))
    assert isinstance(item, Inbound) and isinstance(item.payload, cmd.UpdateCampaign)
    assert dict(item.payload.changes) == {"title": "New", "frequency_cap": None}


def test_catalog_messages_are_not_campaign_scoped() -> None:
    item = run(
        envelope(
            "catalog.ad_product_upserted",
            {
                "ad_product_id": "p",
                "name": "P",
                "unit_ids": ["u"],
                "unit_set_valid": True,
                "buyable": True,
            },
            subject="p",
            actorrole="publisher",
        ),
        topic="campaign.catalog",
    )
    assert isinstance(item, Inbound) and isinstance(item.payload, UpsertAdProduct)
    assert item.campaign_id is None


def test_local_start_and_end_are_converted_once_in_the_campaign_time_zone() -> None:
    data = {k: v for k, v in CREATE.items() if k not in ("start_at", "end_at")}
    data |= {
        "start_local": "2026-03-29T03:30:00",
        "end_local": "2026-10-25T02:30:00",
        "timezone": "Europe/Berlin",
    }
    item = run(envelope("campaign.create", data))
    assert isinstance(item, Inbound) and isinstance(item.payload, cmd.CreateCampaign)
    assert item.payload.start_at.isoformat() == "2026-03-29T01:30:00+00:00"
    assert item.payload.end_at.isoformat() == "2026-10-25T00:30:00+00:00"


def test_local_time_in_the_dst_gap_is_refused_and_local_without_zone_is_malformed() -> None:
    data = {k: v for k, v in CREATE.items() if k != "start_at"}
    gap = run(
        envelope(
            "campaign.create",
            data | {"start_local": "2026-03-29T02:30:00", "timezone": "Europe/Berlin"},
        )
    )
    assert isinstance(gap, Inbound) and gap.refusal is not None
    assert gap.refusal.code is RefusalCode.VALIDATION_FAILED
    no_zone = run(envelope("campaign.create", data | {"start_local": "2026-03-29T03:30:00"}))
    assert isinstance(no_zone, Undecodable) and no_zone.code == "invalid_data"
    both = run(
        envelope(
            "campaign.create",
            CREATE | {"start_local": "2026-03-29T03:30:00", "timezone": "Europe/Berlin"},
        )
    )
    assert isinstance(both, Undecodable)


def test_update_with_local_end_converts_it() -> None:
    item = run(
        envelope("campaign.update", {"end_local": "2030-01-01T00:00:00", "timezone": "Asia/Tokyo"})
    )
    assert isinstance(item, Inbound) and isinstance(item.payload, cmd.UpdateCampaign)
    assert item.payload.changes["end_at"].isoformat() == "2029-12-31T15:00:00+00:00"
