"""asyncpg connections and pools with PM's session settings, plus DSN helpers.

A database URL may end in `?pool_mode=transaction`: PostgreSQL is then reached through a pooler in
transaction mode (PgBouncer's `pool_mode = transaction`), where consecutive transactions of one
client connection may run on different server connections. Pools and connections opened on such a
URL keep no state beyond a transaction (docs/operations.md, "PostgreSQL behind PgBouncer"):
- no named prepared statements (asyncpg's statement cache is off: a statement prepared on one server
  connection does not exist on the next);
- only the startup parameters PgBouncer tracks per client (`timezone`, `application_name`), since it
  refuses any other (`search_path`, `plan_cache_mode`): PM's SQL names its schemas;
- no reset on release: asyncpg's reset runs `RESET ALL` on whichever server connection it gets,
  which PgBouncer does not see, so the next client there would lose its `timezone`.
The parameter is PM's, not libpq's: it is removed before the URL reaches asyncpg.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, TypeAlias
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Quoted: Connection and PoolConnectionProxy are generic only in asyncpg-stubs, and subscripting
# them at runtime raises TypeError. A pool hands out proxies, a one-off connect() a Connection.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

SCHEMES: tuple[str, ...] = ("postgresql", "postgres")

POOL_MODE = "pool_mode"
"""The query parameter of a database URL that says how PostgreSQL is pooled in front of PM."""
POOL_MODES: tuple[str, ...] = ("session", "transaction")
"""`session` (the default): a server connection per client connection, as when connecting
directly; `transaction`: a server connection per transaction (PgBouncer's statement mode cannot
run PM's transactions, so it is refused)."""

# Sent in the startup packet rather than SET by an init callback: the pool runs RESET ALL when a
# connection is released, which would undo a SET but restores startup values.
SESSION_SETTINGS: dict[str, str] = {"search_path": "pm, public", "timezone": "UTC"}

# The startup parameters PgBouncer 1.18 accepts from a client and keeps per client, re-applying them
# on whichever server connection serves it; any other one fails the login.
POOLER_TRACKED_SETTINGS: frozenset[str] = frozenset({"timezone", "application_name"})

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


@dataclass(frozen=True)
class Endpoint:
    """A database URL split into what asyncpg connects to and how the server behind it is pooled."""

    dsn: str
    """The URL without `pool_mode`, as asyncpg takes it."""
    transaction_pooled: bool
    """True behind a pooler in transaction mode (`?pool_mode=transaction`)."""

    @classmethod
    def of(cls, dsn: str) -> Endpoint:
        """The endpoint of `dsn`; DatabaseUrlError for an unknown or repeated `pool_mode`."""
        parts = urlsplit(check_dsn(dsn))
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        modes = [v for k, v in pairs if k == POOL_MODE]
        if len(modes) > 1 or (modes and modes[0] not in POOL_MODES):
            raise DatabaseUrlError(
                f"{POOL_MODE} must be given once, as one of {', '.join(POOL_MODES)}: {redact_dsn(dsn)}"
            )
        if not modes:
            return cls(dsn, transaction_pooled=False)
        query = urlencode([(k, v) for k, v in pairs if k != POOL_MODE])
        bare = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
        return cls(bare, transaction_pooled=modes[0] == "transaction")

    def server_settings(
        self, application_name: str, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The startup parameters to send: PM's session settings, the application name and `extra`;
        behind a transaction pooler only those it keeps per client (`POOLER_TRACKED_SETTINGS`)."""
        wanted = {**SESSION_SETTINGS, **(extra or {}), "application_name": application_name}
        if not self.transaction_pooled:
            return wanted
        return {k: v for k, v in wanted.items() if k.lower() in POOLER_TRACKED_SETTINGS}

    def statement_cache_size(self, wanted: int) -> int:
        """`wanted`, or 0 behind a transaction pooler (no statement outlives its server connection)."""
        return 0 if self.transaction_pooled else wanted


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailableError:
    reason = str(exc) or type(exc).__name__
    return DatabaseUnavailableError(f"cannot connect to {redact_dsn(dsn)}: {reason}")


def _refused_startup(dsn: str, exc: asyncpg.ProtocolViolationError) -> DatabaseUnavailableError | None:
    """PgBouncer's answer to a startup parameter it does not take, as an error that names the fix."""
    if "unsupported startup parameter" not in str(exc):
        return None
    return DatabaseUnavailableError(
        f"cannot connect to {redact_dsn(dsn)}: {exc} (a pooler in transaction mode, such as PgBouncer? "
        f"then end the URL with ?{POOL_MODE}=transaction)"
    )


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
    plan_cache_mode: str | None = None
    """PostgreSQL's `plan_cache_mode` for the pool's sessions (None: the server's). Not sent behind a
    transaction pooler, where no statement is prepared once and run again, so every run is planned."""


class ConnectionInit(Protocol):
    """Run on each new connection of a pool (type codecs, say); it must leave no server-side state."""

    async def __call__(self, conn: asyncpg.Connection[asyncpg.Record], /) -> None: ...


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout_s: float = 10.0,
    application_name: str = "pm",
    reset_on_release: bool = True,
    tuning: PoolTuning = PoolTuning(),
    init: ConnectionInit | None = None,
) -> Pool:
    """Open a pool whose connections use schema `pm` first and UTC.

    Args:
        reset_on_release: asyncpg resets every released connection (advisory locks, cursors,
            LISTEN, session settings) with one more round trip. A caller that never leaves such
            state behind (single statements, transactions only as context managers) may skip it.
            Never done behind a transaction pooler (see the module's docstring).
        init: run on every new connection (`ConnectionInit`).
    """
    endpoint = Endpoint.of(dsn)
    reset = reset_on_release and not endpoint.transaction_pooled
    try:
        pool: Pool = await asyncpg.create_pool(
            endpoint.dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout_s,
            command_timeout=tuning.command_timeout_s,
            statement_cache_size=endpoint.statement_cache_size(tuning.statement_cache_size),
            max_cached_statement_lifetime=tuning.max_cached_statement_lifetime_s,
            max_inactive_connection_lifetime=tuning.max_inactive_connection_lifetime_s,
            server_settings=endpoint.server_settings(application_name, _extra_settings(tuning)),
            init=init,
            reset=None if reset else _keep,
        )
    except _UNAVAILABLE_ERRORS as exc:
        raise _unavailable(dsn, exc) from exc
    except asyncpg.ProtocolViolationError as exc:
        raise (_refused_startup(dsn, exc) or exc) from exc
    return pool


def _extra_settings(tuning: PoolTuning) -> dict[str, str]:
    return {} if tuning.plan_cache_mode is None else {"plan_cache_mode": tuning.plan_cache_mode}


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
    """Open one connection (for tools and migrations) with the same session settings as `create_pool`.

    Behind a transaction pooler it holds no session state either: migrations, which take a session
    advisory lock, must be given PostgreSQL's own address (docs/operations.md).
    """
    endpoint = Endpoint.of(dsn)
    try:
        return await asyncpg.connect(
            endpoint.dsn,
            timeout=connect_timeout_s,
            command_timeout=command_timeout_s,
            statement_cache_size=endpoint.statement_cache_size(statement_cache_size),
            server_settings=endpoint.server_settings(application_name),
        )
    except _UNAVAILABLE_ERRORS as exc:
        raise _unavailable(dsn, exc) from exc
    except asyncpg.ProtocolViolationError as exc:
        raise (_refused_startup(dsn, exc) or exc) from exc


@asynccontextmanager
async def transaction(pool: Pool) -> AsyncIterator[Conn]:
    """Acquire a connection and run the block in one transaction: committed on exit, rolled back on error."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn
