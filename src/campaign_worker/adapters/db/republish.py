"""`state republish`: the current state of chosen campaigns written through the outbox as
`campaign.state` records, to fill a new (or emptied) state topic or after a repair.

Each bounded batch is one transaction that locks its campaigns (`FOR UPDATE`, in id order,
as the worker's batches do), reads their state and appends its records to the outbox: a
change the worker applies at the same time either commits first (and the record shows it)
or waits for this batch (and its own record follows in the outbox, so it is published
after). The topic therefore never ends on an older state than the database holds.

With `--all` the campaigns go in id order and every batch stores, in its transaction, the
last id it wrote (`state_republish`): an interrupted run resumes after it, and the row goes
when the run completes. The records carry each campaign's current version: a subscriber
that already holds that version keeps what it has (it is the same state).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.service import outbound as out
from campaign_worker.service.batch import Batch, State

JOB_ALL = "all"

_IDS_AFTER = "SELECT id FROM campaigns WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2"
_COUNT_AFTER = "SELECT count(*) FROM campaigns WHERE $1::uuid IS NULL OR id > $1"
_UPDATED_AT = "SELECT id, updated_at FROM campaigns WHERE id = ANY($1::uuid[])"
_CURSOR = "SELECT after_id, written, started_at FROM state_republish WHERE job = $1"
_SAVE_CURSOR = """
INSERT INTO state_republish (job, after_id, written, started_at, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (job) DO UPDATE
SET after_id = EXCLUDED.after_id, written = EXCLUDED.written, updated_at = now()
"""
_DROP_CURSOR = "DELETE FROM state_republish WHERE job = $1"


@dataclass(frozen=True)
class Progress:
    written: int  # records written so far by this job (a resumed job counts its earlier runs)
    total: int  # campaigns the job covers
    last_id: uuid.UUID | None


@dataclass(frozen=True)
class RepublishResult:
    written: int
    resumed_from: uuid.UUID | None  # where an interrupted earlier run had stopped
    missing: tuple[uuid.UUID, ...] = ()  # asked for by id, but no such campaign


async def _write_states(
    uow: SqlUnitOfWork, ids: Sequence[uuid.UUID], now: datetime
) -> list[uuid.UUID]:
    """Append the state record of each campaign of `ids` that exists; return those ids."""
    campaigns = await uow.lock_campaigns(ids)
    if not campaigns:
        return []
    extras = await uow.load_extras(campaigns)
    updated: dict[uuid.UUID, datetime] = {
        r[0]: r[1] for r in await uow.pg.fetch(_UPDATED_AT, list(campaigns))
    }
    batch = Batch(now, State.loaded(campaigns, extras))
    await uow.add_outbox(
        [
            out.to_outbox(
                batch.state_of(campaigns[cid], updated[cid]),
                subject=str(cid),
                now=now,
                causation_id=None,
                correlation_id=None,
            )
            for cid in sorted(campaigns)
        ]
    )
    return sorted(campaigns)


async def republish_campaigns(
    engine: AsyncEngine, ids: Sequence[uuid.UUID], *, batch_size: int = 500
) -> RepublishResult:
    """The state records of the given campaigns, `batch_size` per transaction."""
    written: set[uuid.UUID] = set()
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), batch_size):
        async with SqlUnitOfWork(engine) as uow:
            done = await _write_states(uow, wanted[start : start + batch_size], _now())
            await uow.commit()
        written.update(done)
    return RepublishResult(
        written=len(written),
        resumed_from=None,
        missing=tuple(i for i in wanted if i not in written),
    )


async def republish_all(
    engine: AsyncEngine,
    *,
    batch_size: int = 500,
    restart: bool = False,
    on_progress: Callable[[Progress], None] = lambda p: None,
) -> RepublishResult:
    """The state record of every campaign, in id order, resuming an interrupted run unless
    `restart`."""
    async with SqlUnitOfWork(engine) as uow:
        if restart:
            await uow.pg.execute(_DROP_CURSOR, JOB_ALL)
        cursor: Any = await uow.pg.fetchrow(_CURSOR, JOB_ALL)
        after: uuid.UUID | None = cursor[0] if cursor else None
        written: int = cursor[1] if cursor else 0
        started_at: datetime = cursor[2] if cursor else _now()
        remaining: int = await uow.pg.fetchval(_COUNT_AFTER, after)
        await uow.commit()
    resumed_from = after
    total = written + remaining
    on_progress(Progress(written, total, after))
    while True:
        async with SqlUnitOfWork(engine) as uow:
            ids = [r[0] for r in await uow.pg.fetch(_IDS_AFTER, after, batch_size)]
            if not ids:
                await uow.pg.execute(_DROP_CURSOR, JOB_ALL)
                await uow.commit()
                break
            done = await _write_states(uow, ids, _now())
            after = ids[-1]
            written += len(done)
            await uow.pg.execute(_SAVE_CURSOR, JOB_ALL, after, written, started_at)
            await uow.commit()
        total = max(total, written)
        on_progress(Progress(written, total, after))
    return RepublishResult(written=written, resumed_from=resumed_from)


def _now() -> datetime:
    return datetime.now(UTC)
