"""Pulled hosts (docs/deployment.md, "Remote libvirt hosts"; domain/pull.py): a host that no
node runs on, whose VMs any node backs up over libvirt's NBD export with TLS, records the
client PKI directory of the pulling nodes in ``hosts.pull_tls`` (NULL: backed up by its own
node, as before).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("pull_tls", sa.String(4096)))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("pull_tls")
