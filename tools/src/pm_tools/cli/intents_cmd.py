"""`pm intents show ID`: one intent as PostgreSQL has it — amounts, parties, fees, legs and timeline.

Exit codes: 0 shown; 1 no such intent; 2 bad input or the database cannot be reached or is not
migrated. Amounts are shown in major units with the currency; `--json` prints the API's shape. The
intent is read by `pm_tools.intents`; this module reads options and prints.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from pm_client.api import Intent, Party
from pm_tools import intents
from pm_tools.cli import common
from pm_tools.cli.formats import format_amount

app = typer.Typer(help="Intents as PostgreSQL records them.", no_args_is_help=True)


def _party_text(party: Party, name: str | None) -> str:
    fields = {k: v for k, v in msgspec.structs.asdict(party).items() if v is not None}
    kind = type(party).__struct_config__.tag
    described = " ".join([str(kind), *(str(v) for v in fields.values())])
    return f"{described} ({name})" if name else described


def _tables(intent: Intent) -> list[Table]:
    summary = Table(title=f"Intent {intent.id}", show_header=False)
    summary.add_column("field")
    summary.add_column("value")
    summary.add_row("type", intent.type)
    summary.add_row("state", intent.status + (f" ({intent.failure_code})" if intent.failure_code else ""))
    summary.add_row("amount", format_amount(intent.amount, intent.currency))
    summary.add_row("from", _party_text(intent.from_, intent.from_name))
    summary.add_row("to", _party_text(intent.to, intent.to_name))
    if intent.comment:
        summary.add_row("comment", intent.comment)
    summary.add_row("requires monitoring", "yes" if intent.requires_monitoring else "no")
    for fee in intent.fees:
        summary.add_row(
            f"fee {fee.rule_id} v{fee.rule_version}",
            f"{format_amount(fee.amount, fee.currency)} {fee.timing}",
        )
    for leg in intent.legs:
        summary.add_row(f"leg {leg.name}", f"{format_amount(leg.amount, intent.currency)} {leg.state}")
    if intent.payment is not None:
        until = (
            f" (until {intent.payment.expires_at:%Y-%m-%d %H:%M:%S} UTC)" if intent.payment.expires_at else ""
        )
        summary.add_row("payer pays", f"{intent.payment.kind} {intent.payment.link}{until}")
    timeline = Table(title="Timeline")
    for column in ("at (UTC)", "from", "to", "reason"):
        timeline.add_column(column)
    for entry in intent.timeline:
        timeline.add_row(
            entry.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            entry.previous or "—",
            entry.state,
            entry.reason or "",
        )
    return [summary, timeline]


@app.command("show")
def show(
    intent_id: Annotated[str, typer.Argument(metavar="ID", help="The intent id (a UUID).")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the intent as the API shows it.")
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", metavar="URL", envvar="PM_DATABASE_URL", show_default=False),
    ] = None,
) -> None:
    """One intent: amounts, parties, fees, ledger legs and its timeline."""
    try:
        wanted = uuid.UUID(intent_id)
    except ValueError:
        common.fail(f"not an intent id: {intent_id!r} (a UUID)")
    url = database_url or common.settings().database_url
    intent = common.run_reading(intents.load(url, wanted), url, "pm.intent")
    if intent is None:
        common.fail(f"no intent {wanted}", common.EXIT_FAILED)
    if json_output:
        typer.echo(msgspec.json.format(msgspec.json.encode(intent), indent=2).decode())
        return
    for table in _tables(intent):
        common.print_table(table)
