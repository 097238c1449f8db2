"""Helpers every `pm` command shares: settings, the Redis URL option, error mapping, consoles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import typer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console, RenderableType

from pm_shared.settings import CommonSettings, SettingsError, load_settings
from pm_shared.streams.connection import connect

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


def settings() -> CommonSettings:
    """The fleet's `PM_*` settings; an invalid environment exits 2 with what to fix."""
    try:
        return load_settings(CommonSettings)
    except SettingsError as exc:
        fail(f"invalid configuration: {exc}")


def redis_url(option: str | None, config: CommonSettings) -> str:
    """`--redis-url` (or `PM_REDIS_URL`), else the settings default."""
    return option or config.redis_url


def redact(url: str) -> str:
    """`url` without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


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
