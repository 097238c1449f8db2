"""PM's PostgreSQL layer: connections and pools, the migration runner, and its errors."""

from __future__ import annotations

from pm_shared.db.errors import CONNECTION_LOST, DATABASE_ERRORS
from pm_shared.db.migrations import (
    AppliedMigration,
    Migration,
    MigrationError,
    MigrationStatus,
    drop_database,
    ensure_database,
    load_migrations,
    migrate,
    packaged_migrations,
    status,
)
from pm_shared.db.pool import (
    Conn,
    DatabaseUnavailableError,
    DatabaseUrlError,
    Pool,
    PoolTuning,
    check_dsn,
    connect,
    create_pool,
    dsn_database,
    redact_dsn,
    transaction,
    with_database,
)

__all__ = [
    "CONNECTION_LOST",
    "DATABASE_ERRORS",
    "AppliedMigration",
    "Conn",
    "DatabaseUnavailableError",
    "DatabaseUrlError",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "Pool",
    "PoolTuning",
    "check_dsn",
    "connect",
    "create_pool",
    "drop_database",
    "dsn_database",
    "ensure_database",
    "load_migrations",
    "migrate",
    "packaged_migrations",
    "redact_dsn",
    "status",
    "transaction",
    "with_database",
]
