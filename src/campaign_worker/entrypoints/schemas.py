"""The machine-readable contract in `schemas/`, generated from the message models.

* `cloudevent.json`: the inbound CloudEvents envelope (`messages.CloudEvent`);
* `inbound/<type>.json`: one JSON Schema (draft 2020-12) per inbound type: the envelope
  with `type` fixed and `data` described by its model in `messages.INBOUND_TYPES`;
* `outbound/<type>.json`: the same for every outgoing type (`messages_out.OUTBOUND_TYPES`);
* `asyncapi.json`: an AsyncAPI 3.0 document (one channel per contract topic, the worker's
  receive and send operations, one message per type whose payload refers to the files above).

Never edited by hand: `campaign-worker schemas --write schemas/` rewrites them, and a unit test
fails when the checked-in files differ from what the code generates. The AsyncAPI document is
built here rather than by FastStream, because FastStream sees one batch subscriber of raw bytes
while the contract has a model per message type.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from campaign_worker import topics
from campaign_worker.entrypoints import messages as m
from campaign_worker.entrypoints import messages_out as out

DIALECT = "https://json-schema.org/draft/2020-12/schema"
CONTRACT_VERSION = "1.0.0"
CONTENT_TYPE = "application/cloudevents+json"

TOPIC_DOC = {
    topics.COMMANDS: "Advertiser and publisher actions from the upstream platform.",
    topics.REVIEWS: "Publisher moderation decisions.",
    topics.PAYMENTS: "Payment service outcomes.",
    topics.SCHEDULE: "Due starts and ends (the worker's own scheduler; others may publish).",
    topics.DELIVERY: "Ad server delivery reports.",
    topics.CATALOG: "Ad products, unit sets and targeting categories.",
    topics.EVENTS: "Status, serving, creative and command outcomes.",
    topics.NOTIFICATIONS: "One message per notification (also sent as email).",
    topics.SETTLEMENTS: "Charge and refund requests, statements.",
    topics.DLQ: "Messages the worker could not understand, with the original bytes.",
    topics.STATE: (
        "Compacted (cleanup.policy=compact), keyed by campaign id: the whole current state "
        "of each campaign, latest record wins."
    ),
}


def _camel(type_name: str) -> str:
    return "".join(p.capitalize() for p in type_name.replace(".", "_").split("_")) + "Event"


def _doc(model: Any) -> str:
    """A model's docstring on one line."""
    return " ".join((inspect.getdoc(model) or "").split())


def _document(model: type[BaseModel], title: str, description: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": DIALECT, **schema, "title": title, "description": description}


def inbound_schema(spec: m.InboundType) -> dict[str, Any]:
    """The full CloudEvent of one inbound type: envelope, fixed `type`, typed `data`."""
    data_model: Any = spec.data
    data_field: Any = (
        (data_model | None, Field(None, description="No data fields: absent or {}."))
        if data_model is m.Empty
        else (data_model, Field(description=_doc(data_model)))
    )
    type_field: Any = (Literal[spec.type], Field(description=f"Always '{spec.type}'."))
    model = create_model(_camel(spec.type), __base__=m.CloudEvent, type=type_field, data=data_field)
    return _document(model, spec.type, f"Inbound on `{spec.topic}`. {_doc(data_model)}")


def outbound_schema(spec: out.OutboundType) -> dict[str, Any]:
    """The full CloudEvent of one outgoing type."""
    type_field: Any = (Literal[spec.type], Field(description=f"Always '{spec.type}'."))
    model = create_model(
        _camel(spec.type),
        __base__=out.OutgoingEnvelope,
        type=type_field,
        data=(spec.data, Field(description=_doc(spec.data))),
    )
    return _document(model, spec.type, f"Published on `{spec.topic}`. {_doc(spec.data)}")


def _topic_binding(topic: str) -> dict[str, Any]:
    """The Kafka channel binding: the compacted topics say so in their topic configuration."""
    binding: dict[str, Any] = {"bindingVersion": "0.5.0"}
    if topic in topics.COMPACTED:
        binding["topicConfiguration"] = {"cleanup.policy": ["compact"]}
    return binding


def asyncapi() -> dict[str, Any]:
    """AsyncAPI 3.0: channels per topic, receive/send operations, a message per type."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    by_topic: dict[str, list[tuple[str, str, str]]] = {}
    for spec in m.INBOUND_TYPES.values():
        by_topic.setdefault(spec.topic, []).append(
            (spec.type, f"inbound/{spec.type}.json", _doc(spec.data))
        )
    for o in out.OUTBOUND_TYPES.values():
        by_topic.setdefault(o.topic, []).append((o.type, f"outbound/{o.type}.json", _doc(o.data)))
    for topic in (*topics.INBOUND, *topics.OUTBOUND):
        entries = by_topic.get(topic, [])
        key_doc = "original key" if topic == topics.DLQ else "campaign id (product or category id)"
        channels[topic] = {
            "address": topic,
            "title": topic,
            "description": TOPIC_DOC[topic] + " The physical name carries "
            "CAMPAIGN_WORKER_TOPIC_PREFIX in front.",
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t, _, _ in entries},
            "bindings": {"kafka": _topic_binding(topic)},
        }
        for type_name, path, doc in entries:
            messages[type_name] = {
                "name": type_name,
                "title": type_name,
                "summary": doc,
                "contentType": CONTENT_TYPE,
                "payload": {"$ref": path},
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": f"Record key: {key_doc}."},
                        "bindingVersion": "0.5.0",
                    }
                },
            }
        action = "receive" if topic in topics.INBOUND else "send"
        operations[f"{action}:{topic}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{topic}"},
            "summary": ("The worker consumes " if action == "receive" else "The worker publishes ")
            + f"{topic}.",
            "messages": [{"$ref": f"#/channels/{topic}/messages/{t}"} for t, _, _ in entries],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "campaign-worker",
            "version": CONTRACT_VERSION,
            "description": "Message contract v1 of the campaign worker (CloudEvents 1.0, "
            "structured JSON mode). Generated by `campaign-worker schemas --write schemas/`: "
            "do not edit.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "Any Kafka cluster: KAFKA_BOOTSTRAP_SERVERS.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def generate() -> dict[str, dict[str, Any]]:
    """Relative path -> document, for every file of `schemas/`."""
    files: dict[str, dict[str, Any]] = {
        "asyncapi.json": asyncapi(),
        "cloudevent.json": _document(m.CloudEvent, "CloudEvent", _doc(m.CloudEvent)),
    }
    for spec in m.INBOUND_TYPES.values():
        files[f"inbound/{spec.type}.json"] = inbound_schema(spec)
    for o in out.OUTBOUND_TYPES.values():
        files[f"outbound/{o.type}.json"] = outbound_schema(o)
    return files


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[str]:
    """Write every file (and remove stale generated ones); return the paths written."""
    files = generate()
    for stale in set(_existing(directory)) - set(files):
        (directory / stale).unlink()
    for rel, doc in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(doc))
    return sorted(files)


def drift(directory: Path) -> list[str]:
    """What differs between `directory` and the code: empty when they agree."""
    files = generate()
    existing = set(_existing(directory))
    problems = [f"missing: {rel}" for rel in sorted(set(files) - existing)]
    problems += [f"stale (no longer generated): {rel}" for rel in sorted(existing - set(files))]
    problems += [
        f"differs: {rel}"
        for rel in sorted(set(files) & existing)
        if (directory / rel).read_text() != render(files[rel])
    ]
    return problems


def _existing(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return [p.relative_to(directory).as_posix() for p in directory.rglob("*.json")]
