"""`pm fx rates set|list` (docs/fx.md, "Rates"): exchange rates in `pm.fx_rate`, on the database
directly. The work is `pm_tools.fx`; this module reads options and prints.

Exit codes: 0 ok (a list may be empty); 1 the database refused the rate; 2 bad input (a pair PM does
not price, a rate that is not an exact decimal above zero with at most 9 integer digits and 12
decimals, a spread outside 0..2000, a `--valid-from` without its offset), or the database cannot be
reached or is not migrated. A rate is passed on as the string given, never through a float.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import msgspec
import typer
from rich.table import Table

from pm_gateway.fx import rate_view
from pm_shared.fx import store
from pm_tools import fx
from pm_tools.cli import common

app = typer.Typer(help="Currency exchange: rates.", no_args_is_help=True)
rates_app = typer.Typer(help="Exchange rates: set a pair's rate and spread, list them.", no_args_is_help=True)
app.add_typer(rates_app, name="rates")


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(found: list[store.StoredRate], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "pair", "rate", "spread bp", "valid from", "source", "set by", "set at"):
        table.add_column(column, justify="right" if column in ("id", "rate", "spread bp") else "left")
    for r in found:
        table.add_row(
            str(r.id),
            str(r.rate.pair),
            str(r.rate.rate),
            str(r.rate.spread_bps),
            _when(r.valid_from),
            r.source or "-",
            r.created_by,
            _when(r.created_at),
        )
    return table


def _print_json(found: list[store.StoredRate]) -> None:
    views = [rate_view(r) for r in found]
    typer.echo(msgspec.json.format(msgspec.json.encode(views), indent=2).decode())


@rates_app.command("set")
def set_command(
    pair: Annotated[str, typer.Argument(metavar="PAIR", help="BASE/QUOTE: USD/THB, THB/USD, USD/RUB, ….")],
    rate: Annotated[
        str,
        typer.Argument(
            metavar="RATE", help="QUOTE per one BASE, an exact decimal (35.8125): ≤ 9 digits . ≤ 12 digits."
        ),
    ],
    spread_bps: Annotated[
        int, typer.Option("--spread-bps", metavar="N", help="The spread in basis points, 0 to 2000.")
    ],
    source: Annotated[str, typer.Option("--source", metavar="S", help="Where the rate comes from.")] = "",
    valid_from: Annotated[
        str | None,
        typer.Option(
            "--valid-from",
            metavar="ISO",
            show_default=False,
            help="When it applies, RFC 3339 with an offset (2025-01-31T09:00:00Z); default now.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the rate as the API shows it.")] = False,
) -> None:
    """Set a pair's rate and spread (every earlier rate is kept); quotes use the newest one in force."""
    try:
        wanted = fx.rate_request(pair, rate, spread_bps, source=source, valid_from=valid_from)
    except ValueError as exc:
        common.fail(str(exc))
    config = common.settings()
    try:
        stored = common.run_on_database(fx.set_rate(config.database_url, wanted), config.database_url)
    except asyncpg.IntegrityConstraintViolationError as exc:
        common.fail(f"the database refused the rate: {exc}", common.EXIT_FAILED)
    if json_output:
        _print_json([stored])
    else:
        common.print_table(_table([stored], f"rate {stored.id} set"))
    now = datetime.now(UTC)
    if stored.valid_from > now:
        common.warn(f"note: not in force before {_when(stored.valid_from)}; quotes use the rate before it")
    elif (now - stored.valid_from).total_seconds() > config.fx_rate_max_age_s:
        common.warn(
            f"note: valid from longer ago than PM_FX_RATE_MAX_AGE_S ({config.fx_rate_max_age_s:g} s): "
            "a quote uses the newest rate in force, and refuses it as stale (rate_stale) if it is this one"
        )


@rates_app.command("list")
def list_command(
    pair: Annotated[
        str | None,
        typer.Option("--pair", metavar="P", show_default=False, help="Only this pair, as written (USD/THB)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=fx.LIST_LIMIT_MAX, help="At most this many rates.")
    ] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="Print the API's shape.")] = False,
) -> None:
    """Every rate set, newest first (the one a quote uses is the newest already valid)."""
    try:
        wanted = fx.pair_filter(pair) if pair is not None else None
    except ValueError as exc:
        common.fail(str(exc))
    config = common.settings()
    found = common.run_on_database(
        fx.list_rates(config.database_url, wanted, limit=limit), config.database_url
    )
    if json_output:
        _print_json(found)
        return
    common.print_table(_table(found, f"{len(found)} rate(s)" + (f" of {pair}" if pair else "")))
