"""Multi-user authorization: a vault's approval setting and the requests held for approval
(docs/approvals.md).

Existing vaults get ``approvals`` off (operations run at once, as before), a 24-hour delay and
a 72-hour expiry for when it is turned on.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vaults") as batch:
        batch.add_column(
            sa.Column("approvals", sa.String(16), nullable=False, server_default="off")
        )
        batch.add_column(
            sa.Column("approval_delay_hours", sa.Integer, nullable=False, server_default="24")
        )
        batch.add_column(
            sa.Column("approval_expiry_hours", sa.Integer, nullable=False, server_default="72")
        )
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("vault", sa.String(64), nullable=False, index=True),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("summary", sa.String(300), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(160), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("decided_by", sa.String(160)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("executed_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.Text),
        sa.Column("error_code", sa.String(64)),
    )


def downgrade() -> None:
    op.drop_table("approval_requests")
    with op.batch_alter_table("vaults") as batch:
        batch.drop_column("approval_expiry_hours")
        batch.drop_column("approval_delay_hours")
        batch.drop_column("approvals")
