"""inbox retention: an index on received_at, so the relay leader finds the expired rows

The inbox keeps one row per processed message id; the retention deletes rows older than
CAMPAIGN_WORKER_INBOX_RETENTION_S in bounded batches, oldest first. The index is built
CONCURRENTLY (outside the migration's transaction): a large inbox stays writable meanwhile.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02 06:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_inbox_received_at",
            "inbox",
            ["received_at"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_inbox_received_at", table_name="inbox", postgresql_concurrently=True, if_exists=True
        )
