"""Schema migrations with Alembic, run programmatically (`campaign-worker migrate`, and by
`campaign-worker run` unless `--no-migrate`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(sqlalchemy_url: str, connect_args: Mapping[str, Any] | None = None) -> Config:
    """`connect_args` go to asyncpg's `connect()` (the TLS context of DATABASE_URL's
    sslmode/sslrootcert/sslcert: `Settings.postgres_connect_args`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url.replace("%", "%%"))
    cfg.attributes["connect_args"] = dict(connect_args or {})
    return cfg


def upgrade_sync(
    sqlalchemy_url: str, revision: str = "head", connect_args: Mapping[str, Any] | None = None
) -> None:
    command.upgrade(alembic_config(sqlalchemy_url, connect_args), revision)


async def upgrade(
    sqlalchemy_url: str, revision: str = "head", connect_args: Mapping[str, Any] | None = None
) -> None:
    """Alembic's async env runs its own event loop, so it gets a thread of its own."""
    await asyncio.to_thread(upgrade_sync, sqlalchemy_url, revision, connect_args)
