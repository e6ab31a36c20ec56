"""Recovery points, the checkpoints vmvault made, and vault encryption key files.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("vaults") as batch:
        batch.add_column(sa.Column("key_file", sa.Text))
    op.create_table(
        "recovery_points",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("vault", sa.String(64), nullable=False, index=True),
        sa.Column("vm_uuid", sa.String(36), nullable=False, index=True),
        sa.Column("vm_name", sa.String(255), nullable=False),
        sa.Column("created_at", TZ, nullable=False, index=True),
        sa.Column("consistency", sa.String(32), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("frozen_ms", sa.Integer, nullable=False),
        sa.Column("checkpoint", sa.String(128)),
        sa.Column("set_id", sa.String(64)),
        sa.Column("job_id", sa.Integer),
        sa.Column("disks", sa.JSON, nullable=False),
        sa.Column("warnings", sa.JSON, nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("vm_uuid", sa.String(36), nullable=False, index=True),
        sa.Column("point_id", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("xml", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("recovery_points")
    with op.batch_alter_table("vaults") as batch:
        batch.drop_column("key_file")
