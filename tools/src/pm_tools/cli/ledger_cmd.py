"""`pm ledger`: verify mapped accounts, open the operator's accounts, show an account and its transfers.

Exit codes: 0 ok; 1 problems found, or the account does not exist, or the ledger refused; 2 bad input,
or the ledger or the database cannot be reached. Amounts are shown in major units with the currency
(`1,234.56 THB`); the ledger keeps integers in minor units.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import tigerbeetle as tb
import typer
from rich.table import Table

from pm_shared import db
from pm_shared.ledger import accounts
from pm_shared.ledger.api import BATCH_MAX
from pm_tools import ledger_ops
from pm_tools.cli import common
from pm_tools.cli.formats import code_name, currency_of, flag_names, format_timestamp, ledger_name
from pm_tools.cli.formats import format_amount as format_amount  # `pm demo` shows amounts the same way
from pm_tools.ledger_ops import Targets

T = TypeVar("T")

app = typer.Typer(
    help="The ledger: verify accounts, open operator accounts, show accounts and transfers.",
    no_args_is_help=True,
)

DatabaseUrlOption = Annotated[str | None, common.database_url_option("pm.tb_account_map")]
LedgerUrlOption = Annotated[
    str | None,
    typer.Option(
        "--ledger-url",
        metavar="URL",
        envvar="PM_LEDGER_URL",
        show_envvar=True,
        show_default=False,
        help="tigerbeetle://<cluster>@<addr>[,…] or embedded+postgresql://…; default: the embedded "
        "ledger in the database (embedded+<database URL>).",
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        min=0.1,
        help="Give up (exit 2) when the ledger or database is this slow.",
    ),
]


def _targets(database_url: str | None, ledger_url: str | None) -> Targets:
    config = common.settings() if not database_url or not ledger_url else None
    try:
        return ledger_ops.targets(database_url, ledger_url, config)
    except ValueError as exc:
        common.fail(str(exc))


def _run(targets: Targets, timeout_s: float, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` within `timeout_s`; an unreachable, slow or unmigrated store exits 2."""
    try:
        return common.run_on_database(
            ledger_ops.within(timeout_s, work), targets.database_url, lost="the ledger or the database"
        )
    except ledger_ops.NoAnswer:
        common.fail(
            f"no answer within {timeout_s:g}s from the ledger {common.redact(targets.ledger_url)} "
            f"or the database {db.redact_dsn(targets.database_url)}"
        )


def _id_argument(text: str) -> int:
    try:
        return ledger_ops.parse_u128(text)
    except ValueError as exc:
        common.fail(str(exc))


def _owner(row: accounts.MappedAccount | None) -> str:
    if row is None:
        return "not in pm.tb_account_map"
    return f"{row.owner_kind}/{row.owner_id} ({row.currency}, {code_name(row.code)})"


@app.command("verify")
def verify_command(
    operator: Annotated[
        bool,
        typer.Option(
            "--operator/--no-operator",
            help="Also require every currency's operator accounts to be mapped.",
        ),
    ] = True,
    database_url: DatabaseUrlOption = None,
    ledger_url: LedgerUrlOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Check every account in pm.tb_account_map against the chart and the ledger (exit 1 on problems)."""
    targets = _targets(database_url, ledger_url)
    mapped, problems = _run(targets, timeout, ledger_ops.verify(targets, operator=operator))
    if not problems:
        common.out.print(f"ok: {mapped} mapped account(s) match the chart and the ledger", markup=False)
        return
    table = Table(title=f"{len(problems)} problem(s) in {mapped} mapped account(s)")
    table.add_column("Problem")
    table.add_column("Account id", justify="right")
    table.add_column("Owner")
    table.add_column("Currency")
    table.add_column("Code")
    table.add_column("Detail")
    for p in problems:
        table.add_row(
            p.kind.value,
            str(p.account_id),
            f"{p.owner_kind}/{p.owner_id}",
            p.currency,
            code_name(p.code),
            p.detail,
        )
    common.print_table(table)
    raise typer.Exit(common.EXIT_FAILED)


@app.command("open-operator-accounts")
def open_operator_accounts_command(
    currency: Annotated[
        list[str] | None,
        typer.Option(
            "--currency",
            metavar="CCY",
            show_default=False,
            help="Only this currency (repeatable); default all.",
        ),
    ] = None,
    database_url: DatabaseUrlOption = None,
    ledger_url: LedgerUrlOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Open the operator's accounts on every ledger and map them (idempotent: safe to run again)."""
    try:
        currencies = ledger_ops.currencies(currency)
    except ValueError as exc:
        common.fail(str(exc))
    targets = _targets(database_url, ledger_url)
    try:
        rows = _run(targets, timeout, ledger_ops.open_operator_accounts(targets, currencies))
    except accounts.AccountOpenError as exc:
        common.fail(str(exc), common.EXIT_FAILED)
    table = Table(title=f"Operator accounts ({len(rows)}, opened or already open)")
    table.add_column("Currency")
    table.add_column("Code")
    table.add_column("Owner")
    table.add_column("Account id", justify="right")
    for row in rows:
        table.add_row(
            row.currency, code_name(row.code), f"{row.owner_kind}/{row.owner_id}", str(row.account_id)
        )
    common.print_table(table)


@app.command("account")
def account_command(
    account_id: Annotated[str, typer.Argument(metavar="ID", help="Account id, decimal or 0x-hex.")],
    database_url: DatabaseUrlOption = None,
    ledger_url: LedgerUrlOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Show one ledger account: ledger, code, flags, balances in major units, and its owner."""
    value = _id_argument(account_id)
    targets = _targets(database_url, ledger_url)
    account, row = _run(targets, timeout, ledger_ops.account(targets, value))
    if account is None:
        mapped = f" (pm.tb_account_map says it is {_owner(row)})" if row else ""
        common.fail(f"no account {value} (0x{value:032x}) on the ledger{mapped}", common.EXIT_FAILED)
    currency = currency_of(account.ledger)
    table = Table(title=f"Account {value}", show_header=False)
    table.add_column("Field")
    table.add_column("Value")
    table.add_row("id", f"{value}")
    table.add_row("id (hex)", f"0x{value:032x}")
    table.add_row("owner", _owner(row))
    table.add_row("ledger", ledger_name(account.ledger))
    table.add_row("code", code_name(account.code))
    table.add_row("flags", flag_names(int(account.flags), tb.AccountFlags))
    table.add_row("debits pending", format_amount(account.debits_pending, currency))
    table.add_row("debits posted", format_amount(account.debits_posted, currency))
    table.add_row("credits pending", format_amount(account.credits_pending, currency))
    table.add_row("credits posted", format_amount(account.credits_posted, currency))
    table.add_row(
        "net posted (credits - debits)",
        format_amount(account.credits_posted - account.debits_posted, currency),
    )
    table.add_row("created", format_timestamp(account.timestamp))
    common.print_table(table)


@app.command("transfers")
def transfers_command(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT_ID", help="Account id, decimal or 0x-hex.")],
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", min=1, max=BATCH_MAX, help="At most N transfers.")
    ] = 20,
    reversed_: Annotated[bool, typer.Option("--reversed", help="Newest first.")] = False,
    database_url: DatabaseUrlOption = None,
    ledger_url: LedgerUrlOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List an account's transfers (oldest first; --reversed for newest first), amounts in major units."""
    value = _id_argument(account_id)
    targets = _targets(database_url, ledger_url)
    work = ledger_ops.transfers(targets, value, limit=limit, newest_first=reversed_)
    account, transfers = _run(targets, timeout, work)
    if account is None:
        common.fail(f"no account {value} (0x{value:032x}) on the ledger", common.EXIT_FAILED)
    currency = currency_of(account.ledger)
    order = "newest first" if reversed_ else "oldest first"
    table = Table(title=f"Transfers of account {value} ({len(transfers)}, {order})")
    table.add_column("Time")
    table.add_column("Transfer id", justify="right")
    table.add_column("Side")
    table.add_column("Counterparty", justify="right")
    table.add_column("Amount", justify="right")
    table.add_column("Flags")
    table.add_column("Code", justify="right")
    for t in transfers:
        debit = t.debit_account_id == value
        table.add_row(
            format_timestamp(t.timestamp),
            str(t.id),
            "debit" if debit else "credit",
            str(t.credit_account_id if debit else t.debit_account_id),
            format_amount(t.amount, currency),
            flag_names(int(t.flags), tb.TransferFlags),
            str(t.code),
        )
    common.print_table(table)
