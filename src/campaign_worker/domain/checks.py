"""Small argument checks shared by the domain modules (one wording for each refusal)."""

from __future__ import annotations

from datetime import UTC, datetime

from campaign_worker.domain.errors import Refusal, RefusalCode


def invalid(message: str) -> Refusal:
    return Refusal(RefusalCode.VALIDATION_FAILED, message)


def aware_utc(value: datetime, name: str) -> datetime:
    """`value` in UTC; a naive datetime is a caller bug (ValueError), not bad input."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


def coerce_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string, not {type(value).__name__}")
    return value
