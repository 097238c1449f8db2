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
    POOL_MODE,
    Conn,
    ConnectionInit,
    DatabaseUnavailableError,
    DatabaseUrlError,
    Endpoint,
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
    "POOL_MODE",
    "AppliedMigration",
    "Conn",
    "ConnectionInit",
    "DatabaseUnavailableError",
    "DatabaseUrlError",
    "Endpoint",
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
