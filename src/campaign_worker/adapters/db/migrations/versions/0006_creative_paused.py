"""creatives: remember the advertiser's pause through a review (spec §3)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "creatives", sa.Column("paused", sa.Boolean(), server_default="false", nullable=False)
    )
    # a creative paused today was paused by its advertiser
    op.execute("UPDATE creatives SET paused = true WHERE status = 'PAUSED'")


def downgrade() -> None:
    op.drop_column("creatives", "paused")
