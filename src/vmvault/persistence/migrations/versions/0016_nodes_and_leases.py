"""Many hosts (docs/deployment.md): the nodes sharing the catalog, the node and lease of each
job, and named leases (the scheduler's leader lease).

Existing jobs get no node and no lease: their liveness is judged by their pid, as before.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(512), nullable=False),
        sa.Column("machine", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("node", sa.String(128)))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True)))
        batch.create_index("ix_jobs_node", ["node"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_node")
        batch.drop_column("lease_until")
        batch.drop_column("node")
    op.drop_table("nodes")
