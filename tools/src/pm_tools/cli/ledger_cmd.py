"""`pm ledger`: verify mapped accounts, open the operator's accounts, show an account and its transfers.

Exit codes: 0 ok; 1 problems found, or the account does not exist, or the ledger refused; 2 bad input,
or the ledger or the database cannot be reached. Amounts are shown in major units with the currency
(`1,234.56 THB`); the ledger keeps integers in minor units.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import asyncpg
import tigerbeetle as tb
import typer
from rich.table import Table

from pm_shared import db
from pm_shared.ledger import LedgerUrlError, accounts, chart, ids, open_ledger, urls
from pm_shared.ledger.api import BATCH_MAX, Ledger
from pm_tools.cli import common

T = TypeVar("T")

app = typer.Typer(
    help="The ledger: verify accounts, open operator accounts, show accounts and transfers.",
    no_args_is_help=True,
)

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        envvar="PM_DATABASE_URL",
        show_envvar=True,
        show_default=False,
        help="PostgreSQL URL holding pm.tb_account_map; default postgresql://postgres@127.0.0.1:5432/pm.",
    ),
]
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

# Errors that mean "could not reach or use the store at all", as opposed to a failing command.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, DNS, and TimeoutError (the --timeout)
    db.DatabaseUnavailableError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.InvalidPasswordError,
)
# The server answered, but the schema is not there: `pm migrate` has not run.
_UNMIGRATED: tuple[type[BaseException], ...] = (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError)


class _Unreachable(Exception):
    """The ledger or the database cannot be reached (exit 2)."""


@dataclass(frozen=True)
class _Targets:
    database_url: str
    ledger_url: str


def _targets(database_url: str | None, ledger_url: str | None) -> _Targets:
    database = database_url
    ledger = ledger_url
    if not database or not ledger:
        config = common.settings()
        database = database or config.database_url
        ledger = ledger or config.ledger_url or "embedded+" + database
    try:
        db.check_dsn(database)
        urls.parse(ledger)
    except (db.DatabaseUrlError, LedgerUrlError) as exc:
        common.fail(str(exc))
    return _Targets(database, ledger)


async def _open_ledger(url: str, *, write: bool) -> Ledger:
    # Read-only unless writing: only the ledger-writer writes, and a read must not run the expiry pulse.
    return await open_ledger(url, readonly=not write)


def _ledger_unreachable(targets: _Targets, exc: BaseException) -> _Unreachable:
    where = common.redact(targets.ledger_url)
    return _Unreachable(f"cannot reach the ledger {where}: {type(exc).__name__}: {exc}")


@asynccontextmanager
async def _session(targets: _Targets, *, write: bool = False) -> AsyncIterator[tuple[Ledger, db.Conn]]:
    """The ledger and a database connection, both closed on exit; either unreachable → `_Unreachable`."""
    try:
        conn = await db.connect(targets.database_url, application_name="pm ledger")
    except _UNREACHABLE as exc:
        raise _Unreachable(f"cannot reach the database {db.redact_dsn(targets.database_url)}: {exc}") from exc
    try:
        try:
            ledger = await _open_ledger(targets.ledger_url, write=write)
        except _UNREACHABLE as exc:
            raise _ledger_unreachable(targets, exc) from exc
        except _UNMIGRATED as exc:
            where = common.redact(targets.ledger_url)
            raise _Unreachable(f"the ledger {where} has no schema ({exc}); run `pm migrate` on it") from exc
        try:
            try:
                # A TigerBeetle client connects lazily: ask once, so an unreachable cluster is
                # reported as such (after --timeout) even when the command would not ask anything.
                await ledger.lookup_accounts([1])
            except _UNREACHABLE as exc:
                raise _ledger_unreachable(targets, exc) from exc
            yield ledger, conn
        finally:
            await _close_ledger(ledger)
    finally:
        await conn.close()


async def _close_ledger(ledger: Ledger) -> None:
    if not isinstance(ledger, tb.ClientAsync):
        await ledger.close()
        return
    # `tigerbeetle.ClientAsync.close` asserts that no request is still in flight, and one cancelled by
    # --timeout still is (tb_client_deinit releases its packet all the same). The CLI exits next.
    with contextlib.suppress(AssertionError):
        await ledger.close()


def _run(targets: _Targets, timeout_s: float, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `work()` within `timeout_s`, mapping unreachable stores to exit 2."""
    try:
        return asyncio.run(asyncio.wait_for(work(), timeout_s))
    except _Unreachable as exc:
        common.fail(str(exc))
    except TimeoutError:
        common.fail(
            f"no answer within {timeout_s:g}s from the ledger {common.redact(targets.ledger_url)} "
            f"or the database {db.redact_dsn(targets.database_url)}"
        )
    except _UNMIGRATED as exc:
        common.fail(f"{db.redact_dsn(targets.database_url)} is not migrated ({exc}); run `pm migrate`")
    except _UNREACHABLE as exc:
        common.fail(f"lost the ledger or the database: {type(exc).__name__}: {exc}")


# Formatting.


def parse_u128(text: str) -> int:
    """A u128 id written in decimal or 0x-hex (underscores allowed); ValueError otherwise."""
    cleaned = text.strip().replace("_", "")
    try:
        if cleaned[:2].lower() == "0x":
            if not cleaned[2:] or not all(c in "0123456789abcdefABCDEF" for c in cleaned[2:]):
                raise ValueError
            value = int(cleaned[2:], 16)
        else:
            if not cleaned.isdecimal() or not cleaned.isascii():
                raise ValueError
            value = int(cleaned, 10)
    except ValueError:
        raise ValueError(f"not an account id: {text!r} (expected a u128 in decimal or 0x-hex)") from None
    if value > ids.U128_MAX:
        raise ValueError(f"not an account id: {text!r} is larger than 2^128-1")
    if value in (0, ids.U128_MAX):
        raise ValueError(f"not an account id: {text!r} (0 and 2^128-1 are reserved)")
    return value


def _id_argument(text: str) -> int:
    try:
        return parse_u128(text)
    except ValueError as exc:
        common.fail(str(exc))


def currency_of(ledger: int) -> str | None:
    try:
        return chart.currency_of(ledger)
    except chart.UnknownCurrencyError:
        return None


def format_amount(minor: int, currency: str | None) -> str:
    """`minor` units as major units with thousands separators and the currency: `1,234.56 THB`.

    A ledger PM has no currency for shows the integer with `(minor units)`.
    """
    if currency is None:
        return f"{minor:,} (minor units)"
    digits = chart.MINOR_DIGITS.get(currency, 0)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**digits)
    if digits == 0:
        return f"{sign}{whole:,} {currency}"
    return f"{sign}{whole:,}.{fraction:0{digits}d} {currency}"


def format_timestamp(ns: int) -> str:
    """A ledger timestamp (nanoseconds since the Unix epoch) as UTC, to the microsecond."""
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1_000)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _flag_names(flags: int, kind: type[tb.AccountFlags] | type[tb.TransferFlags]) -> str:
    names = [f.name.lower() for f in kind if f.value and f.name and flags & f.value == f.value]
    return ", ".join(names) or "-"


def _code_name(code: int) -> str:
    try:
        return f"{code} ({chart.Code(code).name.lower()})"
    except ValueError:
        return str(code)


def _ledger_name(ledger: int) -> str:
    currency = currency_of(ledger)
    return f"{ledger} ({currency})" if currency else str(ledger)


def _owner(row: accounts.MappedAccount | None) -> str:
    if row is None:
        return "not in pm.tb_account_map"
    return f"{row.owner_kind}/{row.owner_id} ({row.currency}, {_code_name(row.code)})"


# Commands.


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

    async def work() -> tuple[int, list[accounts.Problem]]:
        async with _session(targets) as (ledger, conn):
            mapped = len(await accounts.mapped_accounts(conn))
            currencies = list(chart.LEDGERS) if operator else []
            return mapped, await accounts.verify(ledger, conn, operator_currencies=currencies)

    mapped, problems = _run(targets, timeout, work)
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
            _code_name(p.code),
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
    currencies = [c.upper() for c in currency] if currency else list(chart.LEDGERS)
    for c in currencies:
        if c not in chart.LEDGERS:
            common.fail(f"no ledger for currency {c!r} (known: {', '.join(sorted(chart.LEDGERS))})")
    targets = _targets(database_url, ledger_url)

    async def work() -> list[accounts.MappedAccount]:
        async with _session(targets, write=True) as (ledger, conn):
            return await accounts.open_operator_accounts(ledger, conn, currencies)

    try:
        rows = _run(targets, timeout, work)
    except accounts.AccountOpenError as exc:
        common.fail(str(exc), common.EXIT_FAILED)
    table = Table(title=f"Operator accounts ({len(rows)}, opened or already open)")
    table.add_column("Currency")
    table.add_column("Code")
    table.add_column("Owner")
    table.add_column("Account id", justify="right")
    for row in rows:
        table.add_row(
            row.currency, _code_name(row.code), f"{row.owner_kind}/{row.owner_id}", str(row.account_id)
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

    async def work() -> tuple[tb.Account | None, accounts.MappedAccount | None]:
        async with _session(targets) as (ledger, conn):
            found = await ledger.lookup_accounts([value])
            return (found[0] if found else None), await accounts.lookup_mapped_id(conn, value)

    account, row = _run(targets, timeout, work)
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
    table.add_row("ledger", _ledger_name(account.ledger))
    table.add_row("code", _code_name(account.code))
    table.add_row("flags", _flag_names(int(account.flags), tb.AccountFlags))
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
    flags = tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS
    if reversed_:
        flags |= tb.AccountFilterFlags.REVERSED
    account_filter = tb.AccountFilter(
        account_id=value,
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        code=0,
        timestamp_min=0,
        timestamp_max=0,
        limit=limit,
        flags=flags,
    )

    async def work() -> tuple[tb.Account | None, list[tb.Transfer]]:
        async with _session(targets) as (ledger, conn):
            del conn
            found = await ledger.lookup_accounts([value])
            if not found:
                return None, []
            return found[0], await ledger.get_account_transfers(account_filter)

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
            _flag_names(int(t.flags), tb.TransferFlags),
            str(t.code),
        )
    common.print_table(table)
