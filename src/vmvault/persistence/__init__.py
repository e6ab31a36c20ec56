"""The catalog: SQLAlchemy 2 tables, repositories and a unit of work over SQLite (default)
or PostgreSQL (``VMVAULT_CATALOG_URL``).  The schema is owned by the Alembic migrations in
``migrations/``; ``tables.py`` mirrors the head revision."""
