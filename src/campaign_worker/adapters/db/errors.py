"""Which database failures heal by themselves (retry forever) and which do not."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import exc as sa_exc

# Serialization failure, deadlock, lock timeout, too many connections, admin shutdown,
# crash shutdown, cannot connect now: retried like a lost connection.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03"}


def is_transient(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, OSError | ConnectionError | TimeoutError | asyncio.TimeoutError):
            return True
        if isinstance(
            current,
            asyncpg.exceptions.ConnectionDoesNotExistError
            | asyncpg.exceptions.InterfaceError
            | asyncpg.exceptions.CannotConnectNowError
            | asyncpg.exceptions.PostgresConnectionError
            # the client's own state machine broke, e.g. a rollback racing a backend killed
            # mid-statement: the connection is discarded and the batch retried
            | asyncpg.exceptions.InternalClientError,
        ):
            return True
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if sqlstate in _TRANSIENT_SQLSTATES:
            return True
        current = current.__cause__ or current.__context__
    return False
