"""state republish: where an interrupted `state republish --all` goes on from

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:10:00.000000

One row per running job: the last campaign id whose state was written and how many were
written. The row goes when the job completes; while it is there, `state republish --all`
resumes after that id.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "state_republish",
        sa.Column("job", sa.Text(), primary_key=True),
        sa.Column("after_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("written", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_table("state_republish")
