"""The migration runner: numbered SQL files applied once each, in order, under an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import asyncpg
import msgspec

from pm_shared.db import queries
from pm_shared.db.pool import POOL_MODE, Endpoint, connect, dsn_database, redact_dsn, with_database

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# pg_advisory_lock key for `pm migrate` ("pm_mig" in ASCII); advisory locks are per database, so
# runs against different databases on one server never wait for each other.
MIGRATION_LOCK_KEY = 0x706D5F6D6967

MAINTENANCE_DATABASE = "postgres"


class MigrationError(Exception):
    """The migrations cannot be applied safely; nothing past the last good migration was applied."""


class Migration(msgspec.Struct, frozen=True, kw_only=True):
    """One migration file."""

    version: int
    name: str
    checksum: str  # sha256 hex of the file's bytes
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


class AppliedMigration(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the `pm.schema_migration` ledger."""

    version: int
    name: str
    checksum: str
    applied_at: datetime

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


class MigrationStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What `status` found: applied rows, files still to apply, and anything that blocks `migrate`."""

    applied: list[AppliedMigration]
    pending: list[Migration]
    problems: list[str]


def packaged_migrations() -> Traversable:
    """The migrations folder shipped inside pm_shared (works from a wheel as well as a checkout)."""
    return files("pm_shared.db").joinpath("migrations")


def load_migrations(source: Traversable | Path | None = None) -> list[Migration]:
    """Read and validate the migration files in `source` (default: the packaged ones), ordered by version."""
    folder = packaged_migrations() if source is None else source
    by_version: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.is_file():
            continue
        match = FILE_NAME.match(entry.name)
        if match is None:
            # A .sql file, or anything that starts like one, that the runner would otherwise skip silently.
            if entry.name.endswith(".sql") or re.match(r"^\d{4}", entry.name):
                raise MigrationError(
                    f"bad migration file name {entry.name!r}: expected NNNN_lower_snake_name.sql"
                )
            continue
        version = int(match.group(1))
        data = entry.read_bytes()
        migration = Migration(
            version=version,
            name=match.group(2),
            checksum=hashlib.sha256(data).hexdigest(),
            sql=data.decode("utf-8"),
        )
        if version in by_version:
            raise MigrationError(
                f"duplicate migration version {version:04d}: "
                f"{by_version[version].label}.sql and {migration.label}.sql"
            )
        by_version[version] = migration
    migrations = [by_version[v] for v in sorted(by_version)]
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration versions must run 0001, 0002, … without gaps: "
                f"expected {expected:04d}, found {migration.label}.sql"
            )
    return migrations


def _check_applied(known: list[Migration], applied: list[AppliedMigration]) -> list[str]:
    """Why the ledger and the files disagree, one line per problem (empty when they agree)."""
    by_version = {m.version: m for m in known}
    problems: list[str] = []
    for row in applied:
        migration = by_version.get(row.version)
        if migration is None:
            problems.append(
                f"database has migration {row.label} applied, which this code does not know "
                "(is it older than the schema?)"
            )
        elif migration.checksum != row.checksum or migration.name != row.name:
            problems.append(
                f"migration {migration.label} changed after it was applied as {row.label} "
                f"(checksum {row.checksum[:12]} in the database, {migration.checksum[:12]} on disk); "
                "add a new migration instead of editing an applied one"
            )
    return problems


async def _fetch_applied(conn: asyncpg.Connection[asyncpg.Record]) -> list[AppliedMigration]:
    rows = await conn.fetch(queries.SELECT_APPLIED_MIGRATIONS)
    return [
        AppliedMigration(
            version=row["version"], name=row["name"], checksum=row["checksum"], applied_at=row["applied_at"]
        )
        for row in rows
    ]


async def migrate(
    dsn: str,
    *,
    target: int | None = None,
    source: Traversable | Path | None = None,
    lock_wait_s: float = 300.0,
) -> list[AppliedMigration]:
    """Apply pending migrations up to `target` (default: all), each in its own transaction.

    Returns what this call applied; empty when the schema was already up to date (or another run
    applied it while this one waited for the lock).
    """
    known = load_migrations(source)
    latest = known[-1].version if known else 0
    if target is not None and not 0 <= target <= latest:
        raise MigrationError(f"target {target} is not a known migration version (latest is {latest:04d})")
    if Endpoint.of(dsn).transaction_pooled:
        # Its session advisory lock would be taken on one server connection and left there.
        raise MigrationError(
            f"migrations need a session of their own: give PostgreSQL's address, not a pooler's "
            f"({POOL_MODE}=transaction): {redact_dsn(dsn)}"
        )
    # No command timeout: a long migration must not be cancelled by the client halfway.
    conn = await connect(dsn, command_timeout_s=None, application_name="pm migrate")
    try:
        try:
            await conn.execute(queries.LOCK_MIGRATIONS, MIGRATION_LOCK_KEY, timeout=lock_wait_s)
        except TimeoutError as exc:
            raise MigrationError(
                f"another pm migrate held the migration lock on {redact_dsn(dsn)} for over {lock_wait_s:g}s"
            ) from exc
        return await _apply_pending(conn, known, target)
    finally:
        # Closing the session releases the advisory lock, even when a migration failed halfway.
        await conn.close()


async def _apply_pending(
    conn: asyncpg.Connection[asyncpg.Record], known: list[Migration], target: int | None
) -> list[AppliedMigration]:
    # Under the lock: concurrent CREATE ... IF NOT EXISTS can still fail on the catalog's unique index.
    await conn.execute(queries.CREATE_PM_SCHEMA)
    await conn.execute(queries.CREATE_MIGRATION_TABLE)
    applied = await _fetch_applied(conn)
    problems = _check_applied(known, applied)
    if problems:
        raise MigrationError("; ".join(problems))
    current = applied[-1].version if applied else 0
    if target is not None and target < current:
        raise MigrationError(
            f"target {target:04d} is below the applied version {current:04d}; migrations only go forward"
        )
    done = {row.version for row in applied}
    result: list[AppliedMigration] = []
    for migration in known:
        if migration.version in done or (target is not None and migration.version > target):
            continue
        try:
            async with conn.transaction():
                await conn.execute(migration.sql)
                applied_at: datetime = await conn.fetchval(
                    queries.INSERT_MIGRATION, migration.version, migration.name, migration.checksum
                )
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"migration {migration.label} failed and was rolled back: {exc}") from exc
        log.info("applied migration %s", migration.label)
        result.append(
            AppliedMigration(
                version=migration.version,
                name=migration.name,
                checksum=migration.checksum,
                applied_at=applied_at,
            )
        )
    return result


async def status(dsn: str, *, source: Traversable | Path | None = None) -> MigrationStatus:
    """Compare the ledger with the migration files without changing anything."""
    known = load_migrations(source)
    try:
        conn = await connect(dsn, application_name="pm migrate")
    except asyncpg.InvalidCatalogNameError:
        return MigrationStatus(applied=[], pending=known, problems=[])
    try:
        exists: bool = await conn.fetchval(queries.SELECT_MIGRATION_TABLE_EXISTS)
        applied = await _fetch_applied(conn) if exists else []
    finally:
        await conn.close()
    done = {row.version for row in applied}
    return MigrationStatus(
        applied=applied,
        pending=[m for m in known if m.version not in done],
        problems=_check_applied(known, applied),
    )


async def ensure_database(dsn: str) -> bool:
    """Create the database `dsn` names unless it exists; True when this call created it."""
    name = dsn_database(dsn)
    try:
        conn = await connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    # The database cannot be created from a session inside it, so ask the server's maintenance database.
    admin = await connect(with_database(dsn, MAINTENANCE_DATABASE))
    try:
        exists: bool = await admin.fetchval(queries.SELECT_DATABASE_EXISTS, name)
        if exists:
            return False
        try:
            await admin.execute(queries.create_database(name))
        except asyncpg.DuplicateDatabaseError:
            return False  # a concurrent run created it first
    finally:
        await admin.close()
    log.info("created database %s", name)
    return True


async def drop_database(dsn: str, *, force: bool = True) -> None:
    """Drop the database `dsn` names if it exists; `force` ends sessions still connected to it."""
    name = dsn_database(dsn)
    admin = await connect(with_database(dsn, MAINTENANCE_DATABASE))
    try:
        await admin.execute(queries.drop_database(name, force=force))
    finally:
        await admin.close()
