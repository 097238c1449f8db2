"""What `pm ledger` does: verify the mapped accounts, open the operator's accounts, read an account
and its transfers, on the ledger (TigerBeetle or the embedded one) and PostgreSQL's account map."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import tigerbeetle as tb

from pm_shared import db
from pm_shared.ledger import LedgerUrlError, accounts, chart, ids, open_ledger, urls
from pm_shared.ledger.api import Ledger
from pm_shared.settings import CommonSettings
from pm_tools.database import UNMIGRATED, UNREACHABLE, Unreachable, connection

T = TypeVar("T")

APPLICATION = "pm ledger"


@dataclass(frozen=True)
class Targets:
    database_url: str
    ledger_url: str


class NoAnswer(Exception):
    """The ledger or the database did not answer in time."""


def targets(database_url: str | None, ledger_url: str | None, config: CommonSettings | None) -> Targets:
    """The URLs given, else the settings' (`config`, needed only then); the ledger defaults to the
    embedded one in the database. ValueError when a URL is not one."""
    database = database_url
    ledger = ledger_url
    if not database or not ledger:
        assert config is not None, "settings are needed when a URL is not given"
        database = database or config.database_url
        ledger = ledger or config.ledger_url or "embedded+" + database
    try:
        db.check_dsn(database)
        urls.parse(ledger)
    except (db.DatabaseUrlError, LedgerUrlError) as exc:
        raise ValueError(str(exc)) from None
    return Targets(database, ledger)


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


def currencies(wanted: Sequence[str] | None) -> list[str]:
    """The currencies named (upper-cased), or every one PM has a ledger for; ValueError for another."""
    chosen = [c.upper() for c in wanted] if wanted else list(chart.LEDGERS)
    for c in chosen:
        if c not in chart.LEDGERS:
            raise ValueError(f"no ledger for currency {c!r} (known: {', '.join(sorted(chart.LEDGERS))})")
    return chosen


async def within(timeout_s: float, work: Awaitable[T]) -> T:
    """`work`, or NoAnswer after `timeout_s`."""
    try:
        return await asyncio.wait_for(work, timeout_s)
    except TimeoutError:
        raise NoAnswer(timeout_s) from None


# --- the session: the ledger and the account map ------------------------------------------------


def _ledger_unreachable(targets: Targets, exc: BaseException) -> Unreachable:
    where = db.redact_dsn(targets.ledger_url)
    return Unreachable(f"cannot reach the ledger {where}: {type(exc).__name__}: {exc}")


@asynccontextmanager
async def session(targets: Targets, *, write: bool = False) -> AsyncIterator[tuple[Ledger, db.Conn]]:
    """The ledger and a database connection, both closed on exit; either unreachable → `Unreachable`."""
    async with connection(targets.database_url, APPLICATION) as conn:
        try:
            # Read-only unless writing: only the ledger-writer writes, and a read must not run the
            # expiry pulse.
            ledger = await open_ledger(targets.ledger_url, readonly=not write)
        except UNREACHABLE as exc:
            raise _ledger_unreachable(targets, exc) from exc
        except UNMIGRATED as exc:
            where = db.redact_dsn(targets.ledger_url)
            raise Unreachable(f"the ledger {where} has no schema ({exc}); run `pm migrate` on it") from exc
        try:
            try:
                # A TigerBeetle client connects lazily: ask once, so an unreachable cluster is
                # reported as such (after --timeout) even when the command would not ask anything.
                await ledger.lookup_accounts([1])
            except UNREACHABLE as exc:
                raise _ledger_unreachable(targets, exc) from exc
            yield ledger, conn
        finally:
            await _close_ledger(ledger)


async def _close_ledger(ledger: Ledger) -> None:
    if not isinstance(ledger, tb.ClientAsync):
        await ledger.close()
        return
    # `tigerbeetle.ClientAsync.close` asserts that no request is still in flight, and one cancelled by
    # --timeout still is (tb_client_deinit releases its packet all the same). The CLI exits next.
    with contextlib.suppress(AssertionError):
        await ledger.close()


# --- the commands' work --------------------------------------------------------------------------


async def verify(targets: Targets, *, operator: bool) -> tuple[int, list[accounts.Problem]]:
    """How many accounts are mapped, and the problems found (also unmapped operator accounts when
    `operator`)."""
    async with session(targets) as (ledger, conn):
        mapped = len(await accounts.mapped_accounts(conn))
        wanted = list(chart.LEDGERS) if operator else []
        return mapped, await accounts.verify(ledger, conn, operator_currencies=wanted)


async def open_operator_accounts(targets: Targets, wanted: Sequence[str]) -> list[accounts.MappedAccount]:
    async with session(targets, write=True) as (ledger, conn):
        return await accounts.open_operator_accounts(ledger, conn, list(wanted))


async def account(
    targets: Targets, account_id: int
) -> tuple[tb.Account | None, accounts.MappedAccount | None]:
    """The account on the ledger (None: no such account) and its row in the account map."""
    async with session(targets) as (ledger, conn):
        found = await ledger.lookup_accounts([account_id])
        return (found[0] if found else None), await accounts.lookup_mapped_id(conn, account_id)


async def transfers(
    targets: Targets, account_id: int, *, limit: int, newest_first: bool
) -> tuple[tb.Account | None, list[tb.Transfer]]:
    """The account (None: no such account) and up to `limit` of its transfers, oldest first unless
    `newest_first`."""
    flags = tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS
    if newest_first:
        flags |= tb.AccountFilterFlags.REVERSED
    account_filter = tb.AccountFilter(
        account_id=account_id,
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        code=0,
        timestamp_min=0,
        timestamp_max=0,
        limit=limit,
        flags=flags,
    )
    async with session(targets) as (ledger, _):
        found = await ledger.lookup_accounts([account_id])
        if not found:
            return None, []
        return found[0], await ledger.get_account_transfers(account_filter)
