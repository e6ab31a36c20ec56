"""Queued jobs carry their request; the scheduler's per-schedule progress.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("request", sa.JSON))
        batch.add_column(sa.Column("origin", sa.String(255)))
    op.create_table(
        "schedule_state",
        sa.Column("name", sa.String(160), primary_key=True),
        sa.Column("last_slot", TZ, nullable=False),
        sa.Column("last_key", sa.String(160)),
        sa.Column("updated_at", TZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schedule_state")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("origin")
        batch.drop_column("request")
