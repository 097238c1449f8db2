"""`pm dev`: find or start this checkout's Redis and PostgreSQL, and stop the private ones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from pm_tools import devenv
from pm_tools.cli.common import infrastructure_table, wide_console

app = typer.Typer(help="Developer environment", no_args_is_help=True)


@app.command()
def ensure(
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Where to write PM_REDIS_URL/PM_DATABASE_URL (default: .pm/env, or PM_ENV_FILE).",
        ),
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
    path = env_file or devenv.env_file_path()
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
