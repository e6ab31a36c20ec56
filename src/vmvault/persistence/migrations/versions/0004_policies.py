"""Policies, the policy of each VM, and pinned / kept-until recovery points.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("vault", sa.String(64), nullable=False, index=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("policy", sa.String(64)))
        batch.add_column(sa.Column("protected_since", TZ))
    with op.batch_alter_table("recovery_points") as batch:
        batch.add_column(sa.Column("keep_until", TZ))
        batch.add_column(
            sa.Column("protected", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.drop_column("protected")
        batch.drop_column("keep_until")
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("protected_since")
        batch.drop_column("policy")
    op.drop_table("policies")
