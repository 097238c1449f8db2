"""The `pm` command: one typer app; each command group lives in its own module."""

from __future__ import annotations

import typer

from pm_tools.cli import (
    alerts_cmd,
    bench_cmd,
    chaos_cmd,
    demo_cmd,
    dev_cmd,
    dlq_cmd,
    fx_cmd,
    intents_cmd,
    keys_cmd,
    ledger_cmd,
    merchants_cmd,
    migrate_cmd,
    recon_cmd,
    streams_cmd,
    up_cmd,
    webhooks_cmd,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Payment Manager operations.")
app.command("migrate")(migrate_cmd.migrate)
app.command("up")(up_cmd.up_command)
app.command("streams")(streams_cmd.streams)
app.command("bench")(bench_cmd.bench)
app.command("demo")(demo_cmd.demo_command)
app.command("chaos")(chaos_cmd.chaos)
app.add_typer(dlq_cmd.app, name="dlq")
app.add_typer(dev_cmd.app, name="dev")
app.add_typer(ledger_cmd.app, name="ledger")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(merchants_cmd.app, name="merchants")
app.add_typer(intents_cmd.app, name="intents")
app.add_typer(alerts_cmd.app, name="alerts")
app.add_typer(fx_cmd.app, name="fx")
app.add_typer(recon_cmd.app, name="recon")
app.add_typer(webhooks_cmd.app, name="webhooks")


def main() -> None:
    app()
