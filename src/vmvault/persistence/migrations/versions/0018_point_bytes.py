"""Fleet scale (docs/deployment.md, "Fleet scale"): a point's logical bytes and new bytes as
columns of ``recovery_points``, so that the dashboard and ``/metrics`` sum columns instead of
every point's ``disks`` JSON.

From now on the persistence mapper writes both with the point, from the domain's values
(``RecoveryPoint.bytes_logical``: the disks' sizes, excluded disks left out;
``RecoveryPoint.bytes_new``: the disks' new bytes).  Existing points are backfilled here, once,
from their ``disks`` JSON by the same rule, in the engine's own JSON table function (SQLite's
``json_each``, PostgreSQL's ``json_array_elements``): one ``UPDATE``, whatever the number of
points.  A disk without ``excluded`` counts (points before 0010 had no excluded disks); a
disk without ``bytes_new`` adds 0, as ``PointDisk``'s defaults say.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: Per dialect: the ``SET`` of the backfill, sums over the updated row's ``disks``.
_BACKFILL = {
    "sqlite": (
        "bytes_logical = (SELECT coalesce(sum(CASE WHEN json_extract(d.value, '$.excluded')"
        " THEN 0 ELSE json_extract(d.value, '$.size') END), 0)"
        " FROM json_each(recovery_points.disks) AS d),"
        " bytes_new = (SELECT coalesce(sum(coalesce(json_extract(d.value, '$.bytes_new'), 0)),"
        " 0) FROM json_each(recovery_points.disks) AS d)"
    ),
    "postgresql": (
        "bytes_logical = (SELECT coalesce(sum(CASE WHEN"
        " coalesce((d.value->>'excluded')::boolean, false)"
        " THEN 0 ELSE (d.value->>'size')::bigint END), 0)"
        " FROM json_array_elements(recovery_points.disks) AS d(value)),"
        " bytes_new = (SELECT coalesce(sum(coalesce((d.value->>'bytes_new')::bigint, 0)), 0)"
        " FROM json_array_elements(recovery_points.disks) AS d(value))"
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.add_column(
            sa.Column("bytes_logical", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("bytes_new", sa.BigInteger, nullable=False, server_default="0"))
    dialect = op.get_bind().dialect.name
    op.execute(f"UPDATE recovery_points SET {_BACKFILL[dialect]}")


def downgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.drop_column("bytes_new")
        batch.drop_column("bytes_logical")
