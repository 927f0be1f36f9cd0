"""What the service receives: messages already translated from the wire by an entrypoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from campaign_worker.domain.commands import Command
from campaign_worker.domain.errors import Refusal
from campaign_worker.domain.model import Actor


@dataclass(frozen=True)
class Source:
    """Where a message came from, byte for byte, so it can be dead-lettered or replayed."""

    topic: str  # contract name (prefix removed)
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Inbound:
    """A message the worker understood. `payload` is the command it stands for (one of
    `domain.commands`); it is None exactly when `refusal` is set: the message was well-formed
    but already breaks a rule (for example an unknown currency), so that it becomes a
    `command.rejected` event instead of a dead letter."""

    message_id: str
    type: str
    source: Source
    actor: Actor
    correlation_id: str | None
    campaign_id: UUID | None
    payload: Command | None
    time: datetime | None = None
    refusal: Refusal | None = field(default=None)


@dataclass(frozen=True)
class Undecodable:
    """A message the worker could not understand: it goes to the dead-letter topic."""

    source: Source
    code: str  # not_json, not_cloudevent, unknown_type, invalid_data, too_large, ...
    message: str
    message_id: str | None = None
    type: str | None = None


Item = Inbound | Undecodable
