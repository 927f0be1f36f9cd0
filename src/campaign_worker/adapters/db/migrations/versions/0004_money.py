"""money: campaign accounts, ledger entries, statements (spec §5-7)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 05:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "campaign_accounts",
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("account", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ledger_entries_campaign", "ledger_entries", ["campaign_id", "id"])
    op.create_table(
        "statements",
        sa.Column("statement_id", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("statement_id"),
        sa.UniqueConstraint("campaign_id"),
    )


def downgrade() -> None:
    op.drop_table("statements")
    op.drop_index("ix_ledger_entries_campaign", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("campaign_accounts")
