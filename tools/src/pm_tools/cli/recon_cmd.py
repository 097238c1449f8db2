"""`pm recon`: reconciliation (docs/reconciliation.md) — alerts, sweeps, repairs and reports.

    pm recon alerts [--status open|acknowledged|resolved|all] [--kind K] [--json]
    pm recon show ID            the alert, what happened to it, its repair
    pm recon ack ID [--note]    someone is on it
    pm recon resolve ID [--note]
    pm recon run SWEEP [--day D] [--wait S]   ask the reconciler for a sweep now
    pm recon runs [--sweep S]
    pm recon repair ID --dry-run | --yes      propose, or apply through the ledger-writer
    pm recon report --day D | --week W [--out DIR]

The work is `pm_tools.recon`; this module reads options and prints. Exit codes: 0 done; 1 no such
alert, a state that does not allow it, nothing to repair, or a sweep/repair not done in time; 2 bad
input, or a store that cannot be reached or is not migrated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from pm_shared.reconciliation import alerts, repairs, requests
from pm_shared.reconciliation.alerts import Alert
from pm_shared.reconciliation.reports import PeriodError
from pm_tools import recon
from pm_tools.cli import common

app = typer.Typer(help="Reconciliation: alerts, sweeps, repairs and reports.", no_args_is_help=True)

STATUSES = {
    "open": ("OPEN",),
    "acknowledged": ("ACKNOWLEDGED",),
    "resolved": ("RESOLVED",),
    "unresolved": ("OPEN", "ACKNOWLEDGED"),
    "all": alerts.STATUSES,
}
Note = Annotated[str | None, typer.Option("--note", help="Why (kept on the alert and in its log).")]
AlertId = Annotated[int, typer.Argument(metavar="ID", help="Alert id (from `pm recon alerts`).")]


def _encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _table(found: list[Alert]) -> Table:
    table = Table(title="Reconciliation alerts")
    for column in ("id", "kind", "subject", "period", "status", "seen", "last seen (UTC)"):
        table.add_column(column)
    for alert in found:
        table.add_row(
            str(alert.id),
            alert.kind,
            alert.subject or alert.intent_id or "—",
            alert.period or "—",
            alert.status,
            str(alert.occurrences),
            alert.last_seen_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def _database_url() -> str:
    return common.settings().database_url


@app.command("alerts")
def list_alerts(
    status: Annotated[
        str, typer.Option("--status", help="open, acknowledged, resolved, unresolved or all.")
    ] = ("unresolved"),
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind (e.g. posted_zero).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per alert per line.")] = False,
) -> None:
    """Alerts, newest first (unresolved by default)."""
    if status not in STATUSES:
        common.fail(f"--status must be one of {', '.join(STATUSES)}, not {status!r}")
    url = _database_url()
    found = common.run_on_database(recon.listing(url, STATUSES[status], kind, limit), url)
    if json_output:
        for alert in found:
            typer.echo(_encode(alert))
    elif not found:
        typer.echo(f"no {status} alerts")
    else:
        common.print_table(_table(found))


def _on_alert(work: Any, url: str) -> Any:
    try:
        return common.run_on_database(work, url)
    except alerts.AlertNotFoundError as exc:
        common.fail(f"no alert {exc.args[0]}", common.EXIT_FAILED)
    except alerts.AlertStateError as exc:
        common.fail(str(exc), common.EXIT_FAILED)


@app.command("show")
def show(alert_id: AlertId) -> None:
    """One alert as JSON: the alert, its log, its repair."""
    url = _database_url()
    shown: recon.Shown = _on_alert(recon.show(url, alert_id), url)
    repair = (
        {"status": shown.repair.status, "transfers": [_transfer(t) for t in shown.repair.transfers]}
        if shown.repair
        else None
    )
    typer.echo(
        json.dumps(
            {"alert": msgspec.to_builtins(shown.alert), "log": shown.history, "repair": repair}, indent=2
        )
    )


@app.command("ack")
def ack(alert_id: AlertId, note: Note = None) -> None:
    """OPEN → ACKNOWLEDGED: someone is on it."""
    url = _database_url()
    alert: Alert = _on_alert(recon.acknowledge(url, alert_id, note), url)
    typer.echo(f"alert {alert.id}: {alert.status}")


@app.command("resolve")
def resolve(alert_id: AlertId, note: Note = None) -> None:
    """→ RESOLVED by hand (a check that finds it again reopens it)."""
    url = _database_url()
    alert: Alert = _on_alert(recon.resolve(url, alert_id, note), url)
    typer.echo(f"alert {alert.id}: {alert.status}")


@app.command("run")
def run(
    sweep: Annotated[str, typer.Argument(help=f"One of: {', '.join(requests.SWEEPS)}.")],
    day: Annotated[str | None, typer.Option("--day", help="UTC day YYYY-MM-DD (default today).")] = None,
    wait: Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for the run.")] = 120.0,
) -> None:
    """Ask the reconciler for a sweep now and wait for it (it runs in pm-reconciler)."""
    try:
        asked = requests.request(sweep, day, recon.actor())
    except requests.RunRequestError as exc:
        common.fail(str(exc))
    config = common.settings()
    done = common.run(recon.run_sweep(config, asked, wait), config.redis_url)
    if done is None:
        common.fail(
            f"sweep {sweep} ({asked.period}) not done after {wait:g} s: is pm-reconciler running? "
            "The request waits for it; follow it with `pm recon runs`.",
            common.EXIT_FAILED,
        )
    typer.echo(f"sweep {sweep} {asked.period}: {done['stats']}")


@app.command("runs")
def runs(
    sweep: Annotated[str | None, typer.Option("--sweep")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1_000)] = 20,
) -> None:
    """Recent sweeps, newest first."""
    url = _database_url()
    table = Table(title="Reconciliation sweeps")
    for column in ("id", "sweep", "period", "status", "owner", "attempts", "stats"):
        table.add_column(column)
    for row in common.run_on_database(recon.runs(url, sweep, limit), url):
        table.add_row(
            *(str(row[c]) for c in ("id", "sweep", "period", "status", "owner", "attempts", "stats"))
        )
    common.print_table(table)


def _transfer(t: Any) -> dict[str, Any]:
    shown: dict[str, Any] = msgspec.to_builtins(t)
    return {k: str(v) if k.endswith("id") else v for k, v in shown.items()}


@app.command("repair")
def repair(
    alert_id: AlertId,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the correcting transfers; move nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Apply them through the ledger-writer.")] = False,
    wait: Annotated[float, typer.Option("--wait", min=0.1)] = 30.0,
) -> None:
    """Propose (--dry-run) or apply (--yes) the correcting transfers that fix an alert."""
    if dry_run == yes:
        common.fail("say --dry-run (show the repair) or --yes (apply it), one of them")
    config = common.settings()
    try:
        if dry_run:
            proposal = common.run_on_database(recon.propose(config, alert_id), config.database_url)
            typer.echo(f"alert {alert_id}: repair {proposal.status}; correcting transfers:")
            for t in proposal.transfers:
                typer.echo("  " + json.dumps(_transfer(t)))
            if proposal.status == "PROPOSED":
                typer.echo(f"apply with: pm recon repair {alert_id} --yes")
            return
        applied, alert = common.run_on_database(recon.apply(config, alert_id, wait), config.database_url)
    except alerts.AlertNotFoundError:
        common.fail(f"no alert {alert_id}", common.EXIT_FAILED)
    except (repairs.NothingToRepairError, repairs.RepairNotAppliedError) as exc:
        common.fail(str(exc), common.EXIT_FAILED)
    typer.echo(
        f"alert {alert_id}: repair {applied.status} ({len(applied.transfers)} transfers);"
        f" alert {alert.status}"
    )


@app.command("report")
def report(
    day: Annotated[str | None, typer.Option("--day", help="A UTC day, YYYY-MM-DD.")] = None,
    week: Annotated[str | None, typer.Option("--week", help="An ISO week, YYYY-Www.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for <period>.csv and .html.")] = Path(
        "reports"
    ),
) -> None:
    """Write the daily or weekly report (CSV and a self-contained HTML page)."""
    if (day is None) == (week is None):
        common.fail("say --day YYYY-MM-DD or --week YYYY-Www, one of them")
    url = _database_url()
    try:
        written = common.run_on_database(recon.report(url, day or week or "", out), url)
    except PeriodError as exc:
        common.fail(str(exc))
    for path in written:
        typer.echo(str(path))
