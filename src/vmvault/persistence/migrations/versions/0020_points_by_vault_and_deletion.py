"""Fleet scale (docs/deployment.md, "Fleet scale"): recovery points indexed by (vault,
deleted_at, created_at) instead of vault alone.

The dashboard asks two questions of a vault's points that concern few of them: the
soft-deleted ones (``SqlHeld.binned``: ``vault = ? AND deleted_at IS NOT NULL``) and the
bytes added in the chart's last 14 days (``SqlHeld.new_bytes_by_day``: ``vault = ? AND
deleted_at IS NULL AND created_at >= ?``).  With an index on ``vault`` alone the database
read every point of the vault for each (10,000 points: 5–7 ms each on SQLite); with this one
it reads only those that match.  Its first column serves every lookup by vault as the old
index did, which it replaces.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.create_index(
            "ix_recovery_points_vault_deleted", ["vault", "deleted_at", "created_at"]
        )
        batch.drop_index("ix_recovery_points_vault")


def downgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.create_index("ix_recovery_points_vault", ["vault"])
        batch.drop_index("ix_recovery_points_vault_deleted")
