"""The operator tools' connections to PostgreSQL, and which failures mean "cannot reach it at all"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from pm_shared import db

UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, DNS, and TimeoutError
    db.DatabaseUnavailableError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.InvalidPasswordError,
)
"""Errors that mean the server cannot be reached or used at all, as opposed to a failing command."""
UNMIGRATED: tuple[type[BaseException], ...] = (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError)
"""The server answered, but the schema is not there: `pm migrate` has not run."""


class Unreachable(Exception):
    """A store (the database, the ledger) cannot be reached; the message says which and why."""


@asynccontextmanager
async def connection(url: str, application_name: str) -> AsyncIterator[db.Conn]:
    """A connection to `url`, closed on exit; `Unreachable` when it cannot be made."""
    try:
        conn = await db.connect(url, application_name=application_name)
    except UNREACHABLE as exc:
        raise Unreachable(f"cannot reach the database {db.redact_dsn(url)}: {exc}") from exc
    try:
        yield conn
    finally:
        await conn.close()
