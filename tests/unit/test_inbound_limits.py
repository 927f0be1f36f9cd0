"""Nothing the worker reads is unbounded: every string of every inbound schema (the envelope
included) has a maxLength and every list a maxItems, the models enforce them, and the records
that used to crash translation or the processor are now dead letters or refusals (the
property test on Postgres is tests/integration/test_hostile_input.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaign_worker.entrypoints import messages as m
from campaign_worker.entrypoints import schemas
from campaign_worker.entrypoints.translate import translate
from campaign_worker.service.inbound import Inbound, Source, Undecodable
from tests.support.contract import create_data
from tests.unit.fakes import Store
from tests.unit.test_processor import PRODUCT, processor, record

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
INBOUND = ["cloudevent.json", *(f"inbound/{t}.json" for t in sorted(m.INBOUND_TYPES))]


def unbounded(node: Any, path: str = "") -> Iterator[str]:
    """Where a schema allows a string without maxLength or an array without maxItems (a
    `const` or `enum` string is bounded by its values)."""
    if isinstance(node, dict):
        bounded_by_values = "const" in node or "enum" in node
        if node.get("type") == "string" and "maxLength" not in node and not bounded_by_values:
            yield f"{path}: string without maxLength"
        if node.get("type") == "array" and "maxItems" not in node:
            yield f"{path}: array without maxItems"
        for key, value in node.items():
            yield from unbounded(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from unbounded(value, f"{path}/{i}")


def test_the_walk_finds_what_it_looks_for() -> None:
    schema = {"properties": {"a": {"type": "string"}, "b": {"type": "array", "items": {}}}}
    assert list(unbounded(schema)) == [
        "/properties/a: string without maxLength",
        "/properties/b: array without maxItems",
    ]
    assert not list(unbounded({"type": "string", "const": "1.0"}))


@pytest.mark.parametrize("rel", INBOUND)
def test_every_inbound_string_and_list_is_bounded(rel: str) -> None:
    doc = schemas.generate()[rel]
    problems = list(unbounded(doc))
    assert not problems, "\n".join(problems)


def test_the_checked_in_schemas_show_the_limits() -> None:
    for rel in INBOUND:
        assert not list(unbounded(json.loads((SCHEMAS / rel).read_text()))), rel


# ------------------------------------------------------------------ the limits are enforced

CID = str(uuid.uuid4())


def envelope(type_: str = "campaign.create", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests",
        "type": type_,
        "subject": CID,
        "actorrole": "advertiser",
        "actorid": "adv-1",
        "data": create_data(),
    }
    event.update(fields)
    return event


def classify(event: dict[str, Any] | bytes, topic: str = "campaign.commands") -> Any:
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    return translate(Source(topic, 0, 0, None, raw), max_bytes=1_048_576)


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("id", 200),
        ("source", 1000),
        ("type", 200),
        ("subject", 200),
        ("actorid", 200),
        ("correlationid", 200),
        ("datacontenttype", 255),
    ],
)
def test_envelope_attributes_have_a_maximum_length(field: str, limit: int) -> None:
    item = classify(envelope(**{field: "x" * (limit + 1)}))
    assert isinstance(item, Undecodable) and item.code == "not_cloudevent"
    assert field in item.message and "at most" in item.message


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"title": "t" * 1001}, "title"),
        ({"targeting": {"categories": [f"c{i}" for i in range(501)]}}, "targeting.categories"),
        ({"targeting": {"groups": [f"g{i}" for i in range(501)]}}, "targeting.groups"),
        ({"budget": {"amount": "1" * 24, "currency": "EUR"}}, "budget.amount"),
        ({"frequency_cap": {"impressions": 3, "per": "d" * 21}}, "frequency_cap.per"),
        ({"contact": {"name": "n" * 201, "email": "a@example.com"}}, "contact.name"),
        ({"start_at": "2031-01-01T00:00:00" + "0" * 60 + "Z"}, "start_at"),
    ],
)
def test_payload_fields_have_limits(change: dict[str, Any], where: str) -> None:
    item = classify(envelope(data={**create_data(), **change}))
    assert isinstance(item, Undecodable) and item.code == "invalid_data", item
    assert where in item.message


def test_limits_are_generous_for_real_messages() -> None:
    data = create_data(
        title="t" * 200,
        targeting={"categories": [f"c{i}" for i in range(500)]},
        budget={"amount": "999999999999.99", "currency": "EUR"},
    )
    assert isinstance(classify(envelope(data=data, correlationid="c" * 200)), Inbound)
    unit_ids = [f"u{i}" for i in range(1000)]
    product = {**PRODUCT, "data": {**PRODUCT["data"], "unit_ids": unit_ids}}
    assert isinstance(classify(product, "campaign.catalog"), Inbound)


# ------------------------------------------------------------------ regressions


def test_json_nested_deeper_than_the_parser_is_a_dead_letter_not_a_crash() -> None:
    """It raised RecursionError out of `translate` (a 200 kB record), which the consumer does
    not survive."""
    raw = b'{"specversion": "1.0", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    item = classify(raw)
    assert isinstance(item, Undecodable) and item.code == "not_json"
    assert "nested too deeply" in item.message


@pytest.mark.parametrize("field", ["id", "type", "source", "actorid", "correlationid", "subject"])
def test_a_nul_in_an_envelope_attribute_is_refused_before_it_reaches_postgres(field: str) -> None:
    """A NUL in the type of an unknown message went into the dead-letter row itself, which
    Postgres refuses: the dead letter could never be stored (found by the property test)."""
    item = classify(envelope(**{field: "campaign.create\x00"}))
    assert isinstance(item, Undecodable) and item.code == "not_cloudevent"
    assert "NUL" in item.message
    assert item.message_id is None and item.type is None


@pytest.mark.parametrize(
    "data",
    [
        {"title": "Winter\x00sale"},
        {"contact": {"name": "A\x00", "email": "a@example.com"}},
        {"targeting": {"categories": ["cat\x00"]}},
    ],
)
def test_a_nul_in_a_payload_string_is_invalid_data(data: dict[str, Any]) -> None:
    item = classify(envelope(data={**create_data(), **data}))
    assert isinstance(item, Undecodable) and item.code == "invalid_data"
    assert "NUL" in item.message


@pytest.mark.parametrize(
    "change",
    [
        {"start_at": "0001-01-01T00:00:00+14:00"},  # UTC would be before year 1
        {"end_at": "9999-12-31T23:59:59-14:00"},  # UTC would be after year 9999
        {"end_at": "3000-01-01T00:00:00Z"},
        {"start_at": "1969-12-31T23:59:59Z"},
        {"start_at": None, "start_local": "0001-01-01T00:00:00", "timezone": "Asia/Tokyo"},
        {"end_at": None, "end_local": "9999-12-31T23:59:59", "timezone": "America/New_York"},
    ],
)
def test_instants_outside_1970_to_3000_are_invalid_data(change: dict[str, Any]) -> None:
    """Instants at the edge of the calendar raised OverflowError in the processor (converting
    to UTC, or to an instant in the campaign's zone) for every retry of the batch."""
    data = {k: v for k, v in {**create_data(), **change}.items() if v is not None}
    item = classify(envelope(data=data))
    assert isinstance(item, Undecodable) and item.code == "invalid_data", item
    assert "between 1970-01-01 and 3000-01-01" in item.message


def test_the_envelope_time_is_bounded_too() -> None:
    item = classify(envelope(time="0001-01-01T00:00:00+14:00"))
    assert isinstance(item, Undecodable) and item.code == "not_cloudevent"


def test_delivery_counts_are_bounded() -> None:
    report = {
        "period_start": "2031-01-01T00:00:00Z",
        "period_end": "2031-01-01T00:01:00Z",
        "impressions": 10**12 + 1,
        "clicks": 0,
        "spend": {"amount": "1.00", "currency": "EUR"},
    }
    event = envelope("delivery.reported", data=report, actorrole="system", actorid=None)
    item = classify(event, "campaign.delivery")
    assert isinstance(item, Undecodable) and item.code == "invalid_data"
    assert "impressions" in item.message


async def test_a_zone_folder_as_local_time_zone_is_refused_not_a_crash() -> None:
    """`timezone: "Europe"` with a local start raised IsADirectoryError out of `translate`
    (the zone database is a folder tree); it is a rule refusal now, like any unknown zone."""
    data = {**create_data(), "start_local": "2031-01-01T09:00:00", "timezone": "Europe"}
    del data["start_at"]
    item = classify(envelope(data=data))
    assert isinstance(item, Inbound) and item.refusal is not None
    assert item.refusal.code.value == "validation_failed"
    assert "'Europe' is not an IANA time zone" in item.refusal.message
    store = Store()
    report = await processor(store).process([record(envelope(data=data))])
    assert [code for _, code in report.rejected] == ["validation_failed"]
