"""`schemas/` is generated from the message models and must match them; real messages validate
against it with a JSON Schema validator (outgoing messages captured from the running worker are
validated in tests/e2e/test_operators.py)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from campaign_worker import topics
from campaign_worker.entrypoints import messages, messages_out, schemas
from campaign_worker.entrypoints.cli import EXAMPLES
from campaign_worker.service.envelope import event
from campaign_worker.service.outbound import dead_letter
from tests.support.contract import create_event, product_event
from tests.support.kafka_io import cloudevent
from tests.support.schemas import validate_outgoing

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"


def load(rel: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / rel).read_text()))


def validator(rel: str) -> Draft202012Validator:
    return Draft202012Validator(load(rel), format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_checked_in_schemas_match_the_code() -> None:
    problems = schemas.drift(SCHEMAS)
    assert not problems, (
        "schemas/ drifted from the message models; run `make schemas` "
        "(campaign-worker schemas --write schemas/) and commit the result:\n  "
        + "\n  ".join(problems)
    )


def test_every_message_type_has_a_schema_and_every_schema_is_valid_2020_12() -> None:
    files = schemas.generate()
    assert {f"inbound/{t}.json" for t in messages.INBOUND_TYPES} <= set(files)
    assert {f"outbound/{t}.json" for t in messages_out.OUTBOUND_TYPES} <= set(files)
    for rel, doc in files.items():
        if rel != "asyncapi.json":
            Draft202012Validator.check_schema(doc)
            assert doc["$schema"] == schemas.DIALECT


def test_asyncapi_references_resolve() -> None:
    files = schemas.generate()
    doc = files["asyncapi.json"]
    assert doc["asyncapi"].startswith("3.")
    assert set(doc["channels"]) == set(topics.INBOUND + topics.OUTBOUND)
    messages_ = doc["components"]["messages"]
    assert set(messages_) == set(messages.INBOUND_TYPES) | set(messages_out.OUTBOUND_TYPES)
    for message in messages_.values():
        assert message["payload"]["$ref"] in files, message["payload"]
    for name, op in doc["operations"].items():
        channel = op["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in doc["channels"], name
        for ref in op["messages"]:
            _, _, ch, _, msg = ref["$ref"].split("/")
            assert ch == channel and msg in doc["channels"][ch]["messages"]
        assert op["action"] == ("receive" if channel in topics.INBOUND else "send")


def _inbound_examples() -> list[dict[str, Any]]:
    cid = str(uuid.uuid4())
    return [
        {**EXAMPLES["product"], "id": "ex-1"},
        {**EXAMPLES["create"], "id": "ex-2"},
        create_event(cid),
        product_event(),
        cloudevent("campaign.submit", cid),
        cloudevent("campaign.submit", cid, None),
        cloudevent("campaign.cancel", cid, {"reason": "changed plans"}, actorrole="publisher"),
        cloudevent(
            "review.campaign_rejected", cid, {"reason": "Misleading"}, actorrole="publisher"
        ),
        cloudevent("schedule.start_due", cid, {"due_at": "2030-01-01T00:00:00Z"}, actorid=None),
        # forward compatibility: unknown extra fields are fine
        {**cloudevent("campaign.pause", cid), "traceparent": "00-abc-def-01"},
    ]


@pytest.mark.parametrize("example", _inbound_examples(), ids=lambda e: e["type"])
def test_inbound_examples_validate(example: dict[str, Any]) -> None:
    if example.get("data") is None:
        example = {k: v for k, v in example.items() if k != "data"}
    validator(f"inbound/{example['type']}.json").validate(example)
    validator("cloudevent.json").validate(example)


def test_inbound_schemas_reject_what_the_worker_dead_letters() -> None:
    cid = str(uuid.uuid4())
    create = create_event(cid)
    with pytest.raises(ValidationError):
        validator("inbound/campaign.create.json").validate({**create, "data": {"title": "x"}})
    with pytest.raises(ValidationError):  # a type on another type's schema
        validator("inbound/campaign.submit.json").validate(create)
    with pytest.raises(ValidationError):
        validator("cloudevent.json").validate({"specversion": "0.3", "id": "x"})


def test_outgoing_messages_built_by_the_service_validate() -> None:
    now = datetime.now(UTC)
    cid = str(uuid.uuid4())
    rejected = event(
        topic=topics.EVENTS,
        type="command.rejected",
        subject=cid,
        data={
            "command_id": "c-1",
            "command_type": "campaign.submit",
            "code": "not_found",
            "message": f"campaign {cid} does not exist",
            "campaign_id": cid,
        },
        now=now,
        causation_id="c-1",
        correlation_id="req-1",
    )
    validate_outgoing(json.loads(rejected.value))
    dead = dead_letter(
        physical_topic="p.campaign.commands",
        partition=2,
        offset=41,
        key=b"k",
        value=b"\x00not json",
        headers=(("trace", b"\xff"),),
        code="not_json",
        message="not UTF-8 JSON",
        now=now,
    )
    envelope = json.loads(dead.value)
    validate_outgoing(envelope)
    assert base64.b64decode(envelope["data"]["original"]) == b"\x00not json"


def test_undocumented_outgoing_fields_are_reported() -> None:
    now = datetime.now(UTC)
    cid = str(uuid.uuid4())
    msg = event(
        topic=topics.EVENTS,
        type="command.rejected",
        subject=cid,
        data={
            "command_id": "c",
            "command_type": "campaign.submit",
            "code": "not_found",
            "message": "m",
            "surprise": 1,
        },
        now=now,
        causation_id="c",
        correlation_id=None,
    )
    with pytest.raises(AssertionError, match="surprise"):
        validate_outgoing(json.loads(msg.value))
