"""`pm dev`: find or start this checkout's Redis and PostgreSQL, and stop the private ones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pm_tools import devenv

app = typer.Typer(help="Developer environment", no_args_is_help=True)


@app.command()
def ensure(
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="Where to write PM_REDIS_URL/PM_DATABASE_URL (default: .pm/env)."),
    ] = None,
) -> None:
    """Find or start Redis and PostgreSQL, and write their URLs to an env file.

    For each, in order: the URL in PM_REDIS_URL / PM_DATABASE_URL; a server
    on the default port; the machine's installed server, started; a private
    instance under .pm/ (left running; `pm dev stop` stops it).
    """
    console = wide_console()
    search = devenv.Search.default()
    try:
        env = asyncio.run(devenv.ensure(search))
    except devenv.DevEnvError as exc:
        Console(stderr=True, highlight=False).print(Text(str(exc), style="red"), soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(infrastructure_table(env))
    path = env_file or search.home / "env"
    devenv.write_env_file(path, env.env())
    console.print(f"wrote {path}", soft_wrap=True)


@app.command()
def stop() -> None:
    """Stop the private Redis and PostgreSQL under .pm/ (never the machine's own servers)."""
    home = devenv.default_home()
    try:
        stopped = asyncio.run(devenv.stop_private(home))
    except devenv.DevEnvError as exc:
        Console(stderr=True, highlight=False).print(Text(str(exc), style="red"), soft_wrap=True)
        raise typer.Exit(1) from None
    console = wide_console()
    for what in stopped:
        console.print(f"stopped {what}", soft_wrap=True)
    if not stopped:
        console.print(f"no private instance runs under {home}", soft_wrap=True)


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
        table.add_row(name, devenv.redact(endpoint.url), how)
    return table
