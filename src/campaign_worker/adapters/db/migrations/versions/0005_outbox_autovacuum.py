"""outbox: autovacuum by dead-row count, unthrottled (a queue table)

Every outbox row is inserted once and deleted within moments, so the table is small and its
dead rows are all there is. The default trigger (20 % of the table's rows) is meaningless at
that size and the default cost delay lets vacuum fall behind under load; dead index entries
at the head of the primary key then slow down every relay read. Vacuum and analyze after a
fixed number of changed rows, without the cost delay.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTBOX_STORAGE = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "5000",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "5000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "5000",
    "autovacuum_vacuum_cost_delay": "0",
}


def upgrade() -> None:
    settings = ", ".join(f"{k} = {v}" for k, v in OUTBOX_STORAGE.items())
    op.execute(f"ALTER TABLE outbox SET ({settings})")


def downgrade() -> None:
    op.execute(f"ALTER TABLE outbox RESET ({', '.join(OUTBOX_STORAGE)})")
