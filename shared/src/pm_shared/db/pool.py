"""asyncpg connections and pools with PM's session settings, plus DSN helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Quoted: Connection and PoolConnectionProxy are generic only in asyncpg-stubs, and subscripting
# them at runtime raises TypeError. A pool hands out proxies, a one-off connect() a Connection.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

SCHEMES: tuple[str, ...] = ("postgresql", "postgres")

# Sent in the startup packet rather than SET by an init callback: the pool runs RESET ALL when a
# connection is released, which would undo a SET but restores startup values.
SESSION_SETTINGS: dict[str, str] = {"search_path": "pm, public", "timezone": "UTC"}

# Errors that mean "no session could be opened", as opposed to a failing statement.
_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, DNS failure, and TimeoutError
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
)


class DatabaseUrlError(ValueError):
    """A database URL PM cannot use."""


class DatabaseUnavailableError(ConnectionError):
    """No connection could be opened to the database; the message names the URL without its password."""


def check_dsn(dsn: str) -> str:
    """Return `dsn` unchanged if it is a `postgresql://` or `postgres://` URL, else raise DatabaseUrlError."""
    scheme = urlsplit(dsn).scheme
    if scheme not in SCHEMES:
        raise DatabaseUrlError(
            f"database URL must start with postgresql:// or postgres://, got {redact_dsn(dsn)!r}"
        )
    return dsn


def redact_dsn(dsn: str) -> str:
    """`dsn` with any password replaced by `***`, safe to print and log."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hostinfo = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
    query = parts.query
    if query:
        pairs = [(k, "***" if k == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def dsn_database(dsn: str) -> str:
    """The database name `dsn` points at."""
    parts = urlsplit(check_dsn(dsn))
    name = unquote(parts.path.lstrip("/"))
    if not name:
        query = dict(parse_qsl(parts.query))
        name = query.get("dbname") or query.get("database") or ""
    if not name:
        raise DatabaseUrlError(f"database URL names no database: {redact_dsn(dsn)}")
    return name


def with_database(dsn: str, database: str) -> str:
    """`dsn` pointing at `database` on the same server, with the same user and options."""
    parts = urlsplit(check_dsn(dsn))
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("dbname", "database")])
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(database, safe=""), query, parts.fragment))


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailableError:
    reason = str(exc) or type(exc).__name__
    return DatabaseUnavailableError(f"cannot connect to {redact_dsn(dsn)}: {reason}")


@dataclass(frozen=True)
class PoolTuning:
    """How a pool's connections time out and cache statements; the defaults suit every service."""

    command_timeout_s: float | None = 30.0
    """Per-statement client-side timeout; None waits forever."""
    statement_cache_size: int = 100
    """Prepared statements kept per connection; 0 behind PgBouncer in transaction mode, where a
    prepared statement may not exist on the next server connection."""
    max_cached_statement_lifetime_s: int = 300
    max_inactive_connection_lifetime_s: float = 300.0


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout_s: float = 10.0,
    application_name: str = "pm",
    reset_on_release: bool = True,
    tuning: PoolTuning = PoolTuning(),
) -> Pool:
    """Open a pool whose connections use schema `pm` first and UTC.

    Args:
        reset_on_release: asyncpg resets every released connection (advisory locks, cursors,
            LISTEN, session settings) with one more round trip. A caller that never leaves such
            state behind (single statements, transactions only as context managers) may skip it.
    """
    try:
        pool: Pool = await asyncpg.create_pool(
            check_dsn(dsn),
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout_s,
            command_timeout=tuning.command_timeout_s,
            statement_cache_size=tuning.statement_cache_size,
            max_cached_statement_lifetime=tuning.max_cached_statement_lifetime_s,
            max_inactive_connection_lifetime=tuning.max_inactive_connection_lifetime_s,
            server_settings={**SESSION_SETTINGS, "application_name": application_name},
            reset=None if reset_on_release else _keep,
        )
    except _UNAVAILABLE_ERRORS as exc:
        raise _unavailable(dsn, exc) from exc
    return pool


async def _keep(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """A release without the reset round trip (see `reset_on_release`)."""


async def connect(
    dsn: str,
    *,
    command_timeout_s: float | None = 30.0,
    connect_timeout_s: float = 10.0,
    statement_cache_size: int = 100,
    application_name: str = "pm",
) -> asyncpg.Connection[asyncpg.Record]:
    """Open one connection (for tools and migrations) with the same session settings as `create_pool`."""
    try:
        return await asyncpg.connect(
            check_dsn(dsn),
            timeout=connect_timeout_s,
            command_timeout=command_timeout_s,
            statement_cache_size=statement_cache_size,
            server_settings={**SESSION_SETTINGS, "application_name": application_name},
        )
    except _UNAVAILABLE_ERRORS as exc:
        raise _unavailable(dsn, exc) from exc


@asynccontextmanager
async def transaction(pool: Pool) -> AsyncIterator[Conn]:
    """Acquire a connection and run the block in one transaction: committed on exit, rolled back on error."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn
