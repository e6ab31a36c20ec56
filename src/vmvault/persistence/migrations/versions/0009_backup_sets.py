"""Backup sets: a child job names its parent (the set job).

``recovery_points.set_id`` exists since 0002; a set's points carry the set job's id there.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parent_id", sa.Integer))
        batch.create_index("ix_jobs_parent_id", ["parent_id"])
    with op.batch_alter_table("recovery_points") as batch:
        batch.create_index("ix_recovery_points_set_id", ["set_id"])


def downgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.drop_index("ix_recovery_points_set_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_parent_id")
        batch.drop_column("parent_id")
