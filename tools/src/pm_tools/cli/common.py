"""Helpers every `pm` command shares: settings, the URL options, error mapping, consoles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, NoReturn, TypeVar

import asyncpg
import typer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from pm_shared import db
from pm_shared.settings import CommonSettings, SettingsError, load_settings
from pm_shared.streams.connection import connect
from pm_tools import database, devenv
from pm_tools.devenv.common import redact as redact
from pm_tools.devenv.envfile import with_env_file

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
"""Some records failed or were not found; Redis answered with an error."""
EXIT_USAGE = 2
"""Bad input or configuration, or Redis cannot be reached."""
EXIT_BACKPRESSURE = 3
"""The downstream group is too far behind; try again later."""

# Both print to whatever sys.stdout / sys.stderr is at the time (so test runners capture them).
# No emoji codes: `pm:ledger:commands` must not print a ledger emoji.
out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, emoji=False)

# Width for output that is not a terminal (a pipe, a file): tables keep their natural width up to this.
PIPE_WIDTH = 500


def print_table(table: RenderableType) -> None:
    """Print a table on stdout; into a pipe or file unwrapped, so `grep` and `less -S` see whole rows."""
    if out.is_terminal:
        out.print(table)
        return
    # Console.print(width=…) cannot widen past the console's own width (80 without a terminal).
    wide = Console(
        file=out.file,
        width=PIPE_WIDTH,
        color_system=out.color_system,  # type: ignore[arg-type]
        no_color=out.no_color,
        highlight=False,
        emoji=False,
    )
    wide.print(table)


RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        metavar="URL",
        envvar="PM_REDIS_URL",
        show_envvar=True,
        show_default=False,
        help="Redis URL (redis://host:port/db); default redis://127.0.0.1:6379/0.",
    ),
]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: message` on stderr and exit with `code`."""
    err.print(f"error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(message, markup=False, soft_wrap=True)


def database_url_option(holding: str) -> Any:
    """The `--database-url` option of a command that reads `holding` (a table) there."""
    return typer.Option(
        "--database-url",
        metavar="URL",
        envvar="PM_DATABASE_URL",
        show_envvar=True,
        show_default=False,
        help=f"PostgreSQL URL holding {holding}; default postgresql://postgres@127.0.0.1:5432/pm.",
    )


def settings() -> CommonSettings:
    """The fleet's `PM_*` settings: ours, then the env file's (`.pm/env`, or `PM_ENV_FILE`) for what we
    do not set, as the fleet `pm up` started has them. An invalid environment exits 2 with what to fix."""
    try:
        return load_settings(CommonSettings, environ=with_env_file())
    except SettingsError as exc:
        fail(f"invalid configuration: {exc}")


def redis_url(option: str | None, config: CommonSettings) -> str:
    """`--redis-url` (or `PM_REDIS_URL`), else the settings default."""
    return option or config.redis_url


@asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[Redis]:
    """A client for `url`, closed on exit; a malformed URL exits 2."""
    try:
        client = connect(url, name="pm-cli")
    except ValueError as exc:
        fail(f"invalid Redis URL {redact(url)}: {exc}")
    try:
        yield client
    finally:
        await client.aclose()


def run(coro: Coroutine[Any, Any, T], url: str) -> T:
    """Run `coro`; Redis being unreachable exits 2, any other Redis error exits 1."""
    try:
        return asyncio.run(coro)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        fail(f"cannot reach Redis at {redact(url)}: {exc}", EXIT_USAGE)
    except RedisError as exc:
        fail(f"Redis at {redact(url)} answered with an error: {type(exc).__name__}: {exc}", EXIT_FAILED)


def run_on_database(coro: Coroutine[Any, Any, T], url: str, *, lost: str = "the database") -> T:
    """Run `coro`; a store it cannot reach (`database.Unreachable`), a database `pm migrate` has not
    prepared, or one lost on the way (`lost` names what was) exits 2."""
    try:
        return asyncio.run(coro)
    except database.Unreachable as exc:
        fail(str(exc))
    except database.UNMIGRATED as exc:
        fail(f"{db.redact_dsn(url)} is not migrated ({exc}); run `pm migrate`")
    except database.UNREACHABLE as exc:
        fail(f"lost {lost}: {type(exc).__name__}: {exc}")


def run_reading(coro: Coroutine[Any, Any, T], url: str, table: str) -> T:
    """Run `coro`, which reads `table`; a database it cannot reach, or one without that table, exits 2."""
    try:
        return asyncio.run(coro)
    except (OSError, db.DatabaseUnavailableError, asyncpg.CannotConnectNowError) as exc:
        fail(f"the database cannot be reached ({db.redact_dsn(url)}): {exc}")
    except database.UNMIGRATED:
        fail(f"the database has no {table} table: run `pm migrate`")


def wide_console() -> Console:
    """A console for stdout that, in a log file or CI, does not fold URLs at 80 columns."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 160
    return console


def infrastructure_table(env: devenv.DevEnv) -> Table:
    """Where Redis and PostgreSQL are and how they were found; `pm up` shows the same table."""
    table = Table(title="Infrastructure", title_justify="left", show_edge=False)
    table.add_column("server")
    table.add_column("URL", overflow="fold")
    table.add_column("how")
    for name, endpoint in (("Redis", env.redis), ("PostgreSQL", env.postgres)):
        how = Text(f"{endpoint.strategy}: {endpoint.detail}")
        for note in endpoint.notes:
            how.append(f"\npassed over: {note}", style="dim")
        table.add_row(name, redact(endpoint.url), how)
    return table
