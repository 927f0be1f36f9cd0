"""Validate messages against the checked-in `schemas/` with a JSON Schema validator."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@cache
def _schema(rel: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / rel).read_text()))


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def validate(rel: str, message: dict[str, Any]) -> None:
    schema = _schema(rel)
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        message
    )


def validate_outgoing(envelope: dict[str, Any]) -> None:
    """Valid against its type's schema, and every field it carries is documented there
    (the schemas allow extra fields for consumers; the worker must not rely on that)."""
    rel = f"outbound/{envelope['type']}.json"
    assert (SCHEMAS / rel).is_file(), f"no schema for outgoing type {envelope['type']}"
    validate(rel, envelope)
    schema = _schema(rel)
    undocumented = set(envelope) - set(schema["properties"])
    data_schema = _resolve(schema, schema["properties"]["data"])
    undocumented |= {
        f"data.{k}" for k in set(envelope.get("data") or {}) - set(data_schema["properties"])
    }
    assert not undocumented, (
        f"{envelope['type']} carries fields its model in entrypoints/messages_out.py does not "
        f"document: {sorted(undocumented)}"
    )
