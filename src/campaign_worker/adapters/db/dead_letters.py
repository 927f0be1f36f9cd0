"""Dead letters for operators: list, show, replay (`campaign-worker dlq ...`).

Replay re-publishes the original record (value, key and headers, byte for byte) to its
original topic. Only the outbox relay publishes in this service, so a replay is an outbox row
for the original contract topic, written in the same transaction that stamps `replayed_at`
on the dead letter (under its row lock): a dead letter is replayed once, and a second replay
is refused unless forced. The replayed record then goes through the normal path, so the inbox
still turns a message that was already processed into a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from campaign_worker.adapters.db.tables import dead_letters, outbox
from campaign_worker.adapters.db.uow import decode_headers


@dataclass(frozen=True)
class DeadLetter:
    id: int
    topic: str  # contract name
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    error_code: str
    error_message: str
    message_id: str | None
    message_type: str | None
    created_at: datetime
    replayed_at: datetime | None


class AlreadyReplayed(Exception):
    """The dead letter was replayed before; replaying again needs `force`."""

    def __init__(self, letter: DeadLetter) -> None:
        super().__init__(f"dead letter {letter.id} was already replayed at {letter.replayed_at}")
        self.letter = letter


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        topic=row.topic,
        partition=row.partition,
        offset=row.offset,
        key=row.key,
        value=row.value,
        headers=decode_headers(row.headers),
        error_code=row.error_code,
        error_message=row.error_message,
        message_id=row.message_id,
        message_type=row.message_type,
        created_at=row.created_at,
        replayed_at=row.replayed_at,
    )


async def list_dead_letters(
    engine: AsyncEngine, *, limit: int = 50, pending_only: bool = False
) -> list[DeadLetter]:
    """The newest dead letters first."""
    query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
    if pending_only:
        query = query.where(dead_letters.c.replayed_at.is_(None))
    async with engine.connect() as conn:
        return [_letter(r) for r in await conn.execute(query)]


async def get_dead_letter(engine: AsyncEngine, letter_id: int) -> DeadLetter | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id))
        ).first()
    return _letter(row) if row is not None else None


async def replay_dead_letter(
    engine: AsyncEngine, letter_id: int, *, force: bool = False
) -> DeadLetter | None:
    """Queue the original record for its original topic and stamp `replayed_at`, in one
    transaction. None when there is no such dead letter; `AlreadyReplayed` unless forced."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(dead_letters).where(dead_letters.c.id == letter_id).with_for_update()
            )
        ).first()
        if row is None:
            return None
        letter = _letter(row)
        if letter.replayed_at is not None and not force:
            raise AlreadyReplayed(letter)
        await conn.execute(
            insert(outbox).values(
                topic=row.topic, key=row.key, value=row.value, headers=row.headers
            )
        )
        stamped = await conn.scalar(
            update(dead_letters)
            .where(dead_letters.c.id == letter_id)
            .values(replayed_at=func.now())
            .returning(dead_letters.c.replayed_at)
        )
    return DeadLetter(**{**letter.__dict__, "replayed_at": stamped})
