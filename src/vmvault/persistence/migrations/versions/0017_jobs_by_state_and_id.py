"""Fleet scale (docs/deployment.md, "Fleet scale"): an index of jobs by (state, id).

A claim takes the oldest queued job its node may run (``SqlJobs.claim_next``: ``WHERE state =
'queued' AND <placement> ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED``).  With an index on
``state`` alone the database reads every queued job, evaluates the placement condition (two
subqueries) on each, sorts them and keeps one: a claim cost grew with the queue (a policy's
slot queues a thousand).  With ``(state, id)`` it walks the queued jobs in id order and stops
at the first one that matches.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.create_index("ix_jobs_state_id", ["state", "id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_state_id")
