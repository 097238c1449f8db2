"""`pm alerts list|resolve`: reconciliation alerts — what PM could not settle on its own.

An alert is raised by the orchestrator when a PSP result was dead-lettered (the PSP may have moved
money PM did not book), when a PSP job was dead-lettered after it may have reached the PSP, or when
the ledger refused to book a payment a PSP had made. An operator looks (`pm alerts list`, `pm
intents show`, `pm dlq show`), puts it right (`pm dlq replay`, …) and marks it resolved.

Exit codes: 0 done; 1 an id named no alert; 2 bad input or the database cannot be reached or is not
migrated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import msgspec
import typer
from rich.table import Table

from pm_shared import db
from pm_tools import queries as q
from pm_tools.cli import common

app = typer.Typer(help="Reconciliation alerts: what PM could not settle on its own.", no_args_is_help=True)

T = TypeVar("T")

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", metavar="URL", envvar="PM_DATABASE_URL", show_default=False),
]


def _run(url: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go() -> T:
        conn = await db.connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except (OSError, db.DatabaseUnavailableError, asyncpg.CannotConnectNowError) as exc:
        common.fail(f"the database cannot be reached ({db.redact_dsn(url)}): {exc}")
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        common.fail("the database has no pm.reconciliation_alert table: run `pm migrate`")


def _detail(value: Any) -> dict[str, Any]:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    decoded = msgspec.json.decode(raw)
    return decoded if isinstance(decoded, dict) else {"detail": decoded}


@app.command("list")
def list_alerts(
    include_resolved: Annotated[bool, typer.Option("--all", help="Resolved alerts too.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")
    ] = 100,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per alert, one per line.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Open alerts (or all of them), newest first."""
    url = database_url or common.settings().database_url

    async def fetch(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        return list(await conn.fetch(q.SELECT_ALERTS, include_resolved, limit))

    rows = _run(url, fetch)
    if json_output:
        for row in rows:
            item = {
                "id": row["id"],
                "kind": row["kind"],
                "intentId": row["intent_id"],
                "stream": row["stream"],
                "entryId": row["entry_id"],
                "detail": _detail(row["detail"]),
                "createdAt": row["created_at"].isoformat(),
                "resolvedAt": row["resolved_at"].isoformat() if row["resolved_at"] else None,
            }
            typer.echo(msgspec.json.encode(item).decode())
        return
    if not rows:
        typer.echo("no open alerts" if not include_resolved else "no alerts")
        return
    table = Table(title="Reconciliation alerts")
    for column in ("id", "kind", "intent", "where", "detail", "raised (UTC)", "resolved"):
        table.add_column(column)
    for row in rows:
        detail = _detail(row["detail"])
        shown = ", ".join(f"{k}={v}" for k, v in detail.items() if k != "m" and v not in (None, ""))
        table.add_row(
            str(row["id"]),
            row["kind"],
            row["intent_id"] or "—",
            f"{row['stream']} {row['entry_id']}" if row["stream"] != "intent" else "—",
            shown[:160],
            row["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
            row["resolved_at"].strftime("%Y-%m-%d %H:%M:%S") if row["resolved_at"] else "open",
        )
    common.print_table(table)


@app.command("resolve")
def resolve(
    ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Alert ids (from `pm alerts list`).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Mark alerts resolved once they are put right (one already resolved keeps its time)."""
    url = database_url or common.settings().database_url

    async def mark(conn: asyncpg.Connection) -> tuple[set[int], set[int]]:
        async with conn.transaction():
            known = {r["id"] for r in await conn.fetch(q.SELECT_KNOWN_IDS, ids)}
            if known != set(ids):
                return known, set()  # a typo among the ids: nothing is marked
            done = {r["id"] for r in await conn.fetch(q.RESOLVE_ALERTS, sorted(known))}
        return known, done

    known, done = _run(url, mark)
    missing = sorted(set(ids) - known)
    if missing:
        common.fail(f"no alert {', '.join(map(str, missing))}; nothing was marked", common.EXIT_FAILED)
    for alert_id in ids:
        typer.echo(f"alert {alert_id}: " + ("resolved" if alert_id in done else "was resolved already"))
