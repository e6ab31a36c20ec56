"""Jobs indexed by (vault, ended_at): a vault's newest job end in one index lookup.

A vault's stored bytes (the walk of its chunk objects, services/stored_bytes.py) are reused
by each process until a job of the vault ends, in any process or on any node: a use past the
figure's fresh age, and each walk, asks the catalog ``SELECT max(ended_at) FROM jobs WHERE
vault = ?`` (``SqlJobs.last_ended``), which without this index reads every job of the catalog.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.create_index("ix_jobs_vault_ended_at", ["vault", "ended_at"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_vault_ended_at")
