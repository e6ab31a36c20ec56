"""The engine's own ``INSERT``, whose ``ON CONFLICT`` clause both catalog engines have (SQLite
3.24+, with ``RETURNING`` 3.35+: Debian 12 has 3.40; PostgreSQL 9.5+): where two writers may
insert the same key at once — two nodes, or two threads of one — the row is written or
updated in one statement, never checked for and then inserted (on PostgreSQL, read committed
lets both checks find no row and the second insert fails on the key)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_of(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` into ``table`` for ``conn``'s engine, with ``on_conflict_do_nothing`` and
    ``on_conflict_do_update``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_new(
    conn: Connection, table: Table, unique: str | tuple[str, ...], /, **values: Any
) -> Any | None:
    """Insert a row of ``values`` unless one with the same ``unique`` key (a column, or the
    columns of a unique constraint) exists: its primary key, or None when that key is taken
    — also by another writer's row committed while this one waited for it (``INSERT … ON
    CONFLICT (key) DO NOTHING RETURNING``; a rowcount may be -1 with ``RETURNING``), so a
    caller's "already exists" holds even when two create the same name at once (a check
    before the insert let both pass on PostgreSQL, and the second failed on the key)."""
    ins = insert_of(conn, table).values(**values)
    columns = [unique] if isinstance(unique, str) else list(unique)
    stmt = ins.on_conflict_do_nothing(index_elements=columns).returning(*table.primary_key)
    row = conn.execute(stmt).first()
    return None if row is None else row[0]
