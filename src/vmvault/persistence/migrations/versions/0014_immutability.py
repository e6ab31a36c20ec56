"""Immutable vaults: a vault's setting (off | on | locked) and a point's retain-until;
docs/immutability.md.

Existing vaults are not immutable; existing points have no retain-until (they were not
taken under the rule, and giving them one now would lock what nobody asked to lock).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vaults") as batch:
        batch.add_column(
            sa.Column("immutable", sa.String(16), nullable=False, server_default="off")
        )
    with op.batch_alter_table("recovery_points") as batch:
        batch.add_column(sa.Column("retain_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.drop_column("retain_until")
    with op.batch_alter_table("vaults") as batch:
        batch.drop_column("immutable")
