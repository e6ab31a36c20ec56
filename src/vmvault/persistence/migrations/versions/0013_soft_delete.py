"""Soft delete: a vault's setting (mode, days) and a holding's soft deletion (own points and
copies: ``deleted_at``, ``purge_after``); docs/soft-delete.md.

Existing vaults get the defaults: mode ``on``, 14 days.

Revision ID: 0013
Revises: 0010 (the lead re-chains it after 0011/0012 at merge)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vaults") as batch:
        batch.add_column(
            sa.Column("soft_delete", sa.String(16), nullable=False, server_default="on")
        )
        batch.add_column(
            sa.Column("soft_delete_days", sa.Integer, nullable=False, server_default="14")
        )
    for table in ("recovery_points", "point_copies"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True)))
            batch.add_column(sa.Column("purge_after", sa.DateTime(timezone=True)))


def downgrade() -> None:
    for table in ("point_copies", "recovery_points"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("purge_after")
            batch.drop_column("deleted_at")
    with op.batch_alter_table("vaults") as batch:
        batch.drop_column("soft_delete_days")
        batch.drop_column("soft_delete")
