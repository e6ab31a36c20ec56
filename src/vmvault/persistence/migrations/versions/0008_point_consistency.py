"""How each point was taken: the method's reason, the pause window, the hooks' outcome.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.add_column(sa.Column("method_reason", sa.Text))
        batch.add_column(sa.Column("paused_ms", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("hooks", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.drop_column("hooks")
        batch.drop_column("paused_ms")
        batch.drop_column("method_reason")
