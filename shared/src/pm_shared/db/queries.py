"""Every SQL statement the db package runs, by name."""

from __future__ import annotations

CREATE_PM_SCHEMA = "CREATE SCHEMA IF NOT EXISTS pm"

# The runner creates its own ledger before any migration, so migration 0001 needs no special case.
CREATE_MIGRATION_TABLE = """
CREATE TABLE IF NOT EXISTS pm.schema_migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# Session-level, not xact-level: one run spans many transactions (one per migration) and must
# hold the lock across all of them; it is released when the runner's session ends.
LOCK_MIGRATIONS = "SELECT pg_advisory_lock($1)"

SELECT_MIGRATION_TABLE_EXISTS = "SELECT to_regclass('pm.schema_migration') IS NOT NULL"

SELECT_APPLIED_MIGRATIONS = """
SELECT version, name, checksum, applied_at
FROM pm.schema_migration
ORDER BY version
"""

INSERT_MIGRATION = """
INSERT INTO pm.schema_migration (version, name, checksum)
VALUES ($1, $2, $3)
RETURNING applied_at
"""

SELECT_DATABASE_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)"


def quote_ident(name: str) -> str:
    """Quote `name` as a PostgreSQL identifier (utility statements such as CREATE DATABASE take no `$n`)."""
    if not name or "\x00" in name:
        raise ValueError(f"not a valid PostgreSQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def create_database(name: str) -> str:
    """CREATE DATABASE for `name`, safely quoted."""
    return f"CREATE DATABASE {quote_ident(name)}"


def drop_database(name: str, *, force: bool = False) -> str:
    """DROP DATABASE IF EXISTS for `name`; `force` also ends its open sessions (PostgreSQL 13+)."""
    return f"DROP DATABASE IF EXISTS {quote_ident(name)}" + (" WITH (FORCE)" if force else "")
