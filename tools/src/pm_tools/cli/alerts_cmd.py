"""`pm alerts list|resolve`: reconciliation alerts — what PM could not settle on its own.

An alert is raised by the orchestrator when a PSP result was dead-lettered (the PSP may have moved
money PM did not book), when a PSP job was dead-lettered after it may have reached the PSP, or when
the ledger refused to book a payment a PSP had made. An operator looks (`pm alerts list`, `pm
intents show`, `pm dlq show`), puts it right (`pm dlq replay`, …) and marks it resolved. The work is
`pm_tools.alerts`; this module reads options and prints.

Exit codes: 0 done; 1 an id named no alert; 2 bad input or the database cannot be reached or is not
migrated.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer
from rich.table import Table

from pm_tools import alerts
from pm_tools.alerts import Alert
from pm_tools.cli import common

app = typer.Typer(help="Reconciliation alerts: what PM could not settle on its own.", no_args_is_help=True)

TABLE = "pm.reconciliation_alert"
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", metavar="URL", envvar="PM_DATABASE_URL", show_default=False),
]


def _json(alert: Alert) -> str:
    item = {
        "id": alert.id,
        "kind": alert.kind,
        "intentId": alert.intent_id,
        "stream": alert.stream,
        "entryId": alert.entry_id,
        "detail": alert.detail,
        "createdAt": alert.created_at.isoformat(),
        "resolvedAt": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }
    return msgspec.json.encode(item).decode()


def _table(found: list[Alert]) -> Table:
    table = Table(title="Reconciliation alerts")
    for column in ("id", "kind", "intent", "where", "detail", "raised (UTC)", "resolved"):
        table.add_column(column)
    for alert in found:
        shown = ", ".join(f"{k}={v}" for k, v in alert.detail.items() if k != "m" and v not in (None, ""))
        table.add_row(
            str(alert.id),
            alert.kind,
            alert.intent_id or "—",
            f"{alert.stream} {alert.entry_id}" if alert.stream != "intent" else "—",
            shown[:160],
            alert.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            alert.resolved_at.strftime("%Y-%m-%d %H:%M:%S") if alert.resolved_at else "open",
        )
    return table


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
    found = common.run_reading(alerts.newest(url, include_resolved=include_resolved, limit=limit), url, TABLE)
    if json_output:
        for alert in found:
            typer.echo(_json(alert))
        return
    if not found:
        typer.echo("no open alerts" if not include_resolved else "no alerts")
        return
    common.print_table(_table(found))


@app.command("resolve")
def resolve(
    ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Alert ids (from `pm alerts list`).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Mark alerts resolved once they are put right (one already resolved keeps its time)."""
    url = database_url or common.settings().database_url
    known, done = common.run_reading(alerts.resolve(url, ids), url, TABLE)
    missing = sorted(set(ids) - known)
    if missing:
        common.fail(f"no alert {', '.join(map(str, missing))}; nothing was marked", common.EXIT_FAILED)
    for alert_id in ids:
        typer.echo(f"alert {alert_id}: " + ("resolved" if alert_id in done else "was resolved already"))
