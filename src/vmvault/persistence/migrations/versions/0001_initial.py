"""Initial catalog: vaults, hosts, VM items, jobs and their logs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vaults",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uri", sa.String(512), nullable=False, unique=True),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "vms",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("host_uri", sa.String(512), nullable=False, index=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("grp", sa.String(255), nullable=False),
        sa.Column("power_state", sa.String(32), nullable=False),
        sa.Column("disks", sa.JSON, nullable=False),
        sa.Column("nics", sa.JSON, nullable=False),
        sa.Column("agent_channel", sa.Boolean, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("first_seen", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("vanished_at", TZ),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("vault_id", sa.Integer, sa.ForeignKey("vaults.id")),
        sa.Column("registered_at", TZ),
        sa.Column("agent_version", sa.String(64)),
        sa.Column("crash_consistent_only", sa.Boolean, nullable=False),
        sa.Column("registration_warnings", sa.JSON, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("type", sa.String(32), nullable=False, index=True),
        sa.Column("vault", sa.String(64), nullable=False),
        sa.Column("vm_uuid", sa.String(36), index=True),
        sa.Column("vm_name", sa.String(255)),
        sa.Column("state", sa.String(32), nullable=False, index=True),
        sa.Column("created_at", TZ, nullable=False, index=True),
        sa.Column("started_at", TZ),
        sa.Column("ended_at", TZ),
        sa.Column("bytes_done", sa.BigInteger, nullable=False),
        sa.Column("bytes_total", sa.BigInteger, nullable=False),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("message", sa.Text),
        sa.Column("remedy", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("conflict_key", sa.String(128), unique=True),
    )
    op.create_table(
        "job_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "job_id",
            sa.Integer,
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("at", TZ, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for name in ("job_log", "jobs", "vms", "hosts", "vaults"):
        op.drop_table(name)
