"""Vaults on object storage, copies of points in other vaults, damage found by verify.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vaults") as batch:
        batch.add_column(sa.Column("storage", sa.JSON))
    with op.batch_alter_table("recovery_points") as batch:
        batch.add_column(sa.Column("damaged", sa.JSON))
    op.create_table(
        "point_copies",
        sa.Column("point_id", sa.String(64), primary_key=True),
        sa.Column("vault", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("damaged", sa.JSON),
    )


def downgrade() -> None:
    op.drop_table("point_copies")
    with op.batch_alter_table("recovery_points") as batch:
        batch.drop_column("damaged")
    with op.batch_alter_table("vaults") as batch:
        batch.drop_column("storage")
