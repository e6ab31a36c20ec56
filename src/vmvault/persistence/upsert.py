"""The engine's own ``INSERT``, whose ``ON CONFLICT`` clause both catalog engines have (SQLite
3.24+, PostgreSQL 9.5+): where two writers may insert the same key at once — two nodes, or two
threads of one — the row is written or updated in one statement, never checked for and then
inserted (on PostgreSQL, read committed lets both checks find no row and the second insert
fails on the key)."""

from __future__ import annotations

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_of(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` into ``table`` for ``conn``'s engine, with ``on_conflict_do_nothing`` and
    ``on_conflict_do_update``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
