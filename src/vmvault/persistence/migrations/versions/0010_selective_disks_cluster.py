"""Selective disks (a VM's excluded targets) and cluster-managed VMs (per VM, per host).

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("excluded_disks", sa.JSON))
        batch.add_column(sa.Column("cluster_managed", sa.Text))
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("cluster_managed", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("cluster_managed")
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("cluster_managed")
        batch.drop_column("excluded_disks")
