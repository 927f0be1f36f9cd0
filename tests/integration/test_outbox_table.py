"""The outbox is a queue table: the migrations give it autovacuum settings that follow the
dead rows, not the table size (which stays near zero)."""

from __future__ import annotations

import asyncpg
import pytest

pytestmark = pytest.mark.integration


async def test_outbox_vacuums_by_dead_row_count_without_cost_delay(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'outbox'")
    finally:
        await conn.close()
    settings = dict(o.split("=", 1) for o in options)
    assert settings["autovacuum_vacuum_scale_factor"] == "0"
    assert settings["autovacuum_analyze_scale_factor"] == "0"
    assert settings["autovacuum_vacuum_cost_delay"] == "0"
    assert int(settings["autovacuum_vacuum_threshold"]) <= 10_000
