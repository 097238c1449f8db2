"""`pm migrate`: create the database if needed and apply PM's schema migrations."""

from __future__ import annotations

import asyncio

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from pm_shared import db
from pm_shared.settings import CommonSettings
from pm_tools.devenv.envfile import with_env_file

# Distinct from 1 (migration problem) so scripts such as `make up` can tell "start PostgreSQL" apart.
EXIT_UNREACHABLE = 2


def migrate(
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        envvar="PM_DATABASE_URL",
        help="PostgreSQL URL (postgresql://user:password@host:port/database).",
        show_default=False,
    ),
    status: bool = typer.Option(
        False, "--status", help="Show applied and pending migrations; change nothing."
    ),
    target: int | None = typer.Option(None, "--target", help="Apply migrations up to this version only."),
) -> None:
    """Create the database if it is missing and apply pending schema migrations."""
    url = database_url or with_env_file().get("PM_DATABASE_URL") or CommonSettings().database_url
    try:
        if status:
            problems = asyncio.run(_show_status(url))
            if problems:
                raise typer.Exit(1)
        else:
            asyncio.run(_migrate(url, target))
    except db.DatabaseUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        typer.echo("Is PostgreSQL running, and is PM_DATABASE_URL / --database-url right?", err=True)
        raise typer.Exit(EXIT_UNREACHABLE) from exc
    except (db.MigrationError, db.DatabaseUrlError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except asyncpg.PostgresError as exc:
        # Such as permission denied for CREATE DATABASE: the server answered, the command failed.
        typer.echo(f"error: {db.redact_dsn(url)}: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc


async def _migrate(url: str, target: int | None) -> None:
    console = Console()
    if await db.ensure_database(url):
        console.print(f"created database {db.dsn_database(url)}", soft_wrap=True)
    applied = await db.migrate(url, target=target)
    if not applied:
        console.print(f"schema up to date ({db.redact_dsn(url)})", soft_wrap=True, markup=False)
        return
    table = Table(title=f"Applied migrations ({db.dsn_database(url)})")
    table.add_column("Version", justify="right")
    table.add_column("Name")
    table.add_column("Checksum")
    table.add_column("Applied at")
    for row in applied:
        table.add_row(f"{row.version:04d}", row.name, row.checksum[:12], row.applied_at.isoformat())
    console.print(table)


async def _show_status(url: str) -> list[str]:
    console = Console()
    result = await db.status(url)
    table = Table(title=f"Migrations ({db.dsn_database(url)})")
    table.add_column("Version", justify="right")
    table.add_column("Name")
    table.add_column("State")
    table.add_column("Applied at")
    for row in result.applied:
        table.add_row(f"{row.version:04d}", row.name, "applied", row.applied_at.isoformat())
    for migration in result.pending:
        table.add_row(f"{migration.version:04d}", migration.name, "pending", "")
    console.print(table)
    for problem in result.problems:
        typer.echo(f"error: {problem}", err=True)
    return result.problems
