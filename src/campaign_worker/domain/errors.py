"""Refusals: a well-formed command that breaks a rule (spec §8).

There is one exception type, `Refusal`, carrying a stable machine-readable `code` and a precise
human `message` that names the field or rule involved. The service turns it into a
`command.rejected` event; nothing else in the domain raises for rule violations.
"""

from __future__ import annotations

from enum import StrEnum


class RefusalCode(StrEnum):
    """Stable codes on `command.rejected` (contract v1: extend, never rename)."""

    INVALID_TRANSITION = "invalid_transition"
    NOT_EDITABLE = "not_editable"
    LOCKED_AFTER_APPROVAL = "locked_after_approval"
    CONTACT_PUBLISHER = "contact_publisher"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    VALIDATION_FAILED = "validation_failed"
    DUPLICATE_NOT_ALLOWED = "duplicate_not_allowed"
    ALREADY_EXISTS = "already_exists"
    SCHEDULE_PASSED = "schedule_passed"  # the campaign's end has passed: too late for this


class Refusal(Exception):
    """A command was understood but breaks a rule; state must stay unchanged."""

    code: RefusalCode
    message: str

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(code, message)  # keeps the exception picklable
        self.code = RefusalCode(code)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def __repr__(self) -> str:
        return f"Refusal({self.code.value!r}, {self.message!r})"
