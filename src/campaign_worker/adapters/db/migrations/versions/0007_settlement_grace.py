"""settlement grace and relevance peers: pending statement time, LIVE impressions and clicks
as columns of campaign_accounts (spec §6, §7)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:30:00.000000

Accounts written before this revision keep 0 LIVE impressions and clicks until their next
delivery report (their old documents never counted them separately), and have nothing pending:
their statements were issued at the close.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "campaign_accounts", sa.Column("settle_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "campaign_accounts",
        sa.Column("live_impressions", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "campaign_accounts",
        sa.Column("live_clicks", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.create_index(
        "ix_campaign_accounts_settle_at",
        "campaign_accounts",
        ["settle_at"],
        postgresql_where=sa.text("settle_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_accounts_settle_at", table_name="campaign_accounts")
    op.drop_column("campaign_accounts", "live_clicks")
    op.drop_column("campaign_accounts", "live_impressions")
    op.drop_column("campaign_accounts", "settle_at")
