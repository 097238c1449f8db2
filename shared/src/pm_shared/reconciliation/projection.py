"""Projection drift: `pm.account_balance` (the posted totals the saga adds up per account) against the
ledger's own `debits_posted` / `credits_posted`, as balances (credits − debits): an orphan and the
repair that reversed it add to both of the ledger's totals and leave the balance the projection has.

Two things move ledger money the projection does not count, and are taken out before comparing: a
merchant's account closings and reopenings (codes 40 and 41). Correcting transfers are counted: a
repair makes the ledger what the intents (and so the projection) say.

A settlement posts on the ledger before its projection commits, so a difference seen once may be a
settlement half-way: `drifted` reads both sides again after `settle_s` and reports only what stayed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import tigerbeetle as tb

from pm_shared.db import Conn
from pm_shared.ledger.api import Ledger
from pm_shared.merchants.closing import CLOSE_CODE, REOPEN_CODE
from pm_shared.reconciliation import kinds, queries
from pm_shared.reconciliation.verify import Finding

_BOTH = tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS


@dataclass(frozen=True)
class Row:
    account_id: int
    debited: int
    credited: int
    closings: int


def row_of(record: asyncpg.Record) -> Row:
    return Row(
        uuid.UUID(str(record["account_id"])).int,
        record["debits_posted"],
        record["credits_posted"],
        record["closings"],
    )


async def _outside_intents(ledger: Ledger, account_id: int) -> tuple[int, int]:
    """What closings and reopenings debited and credited on the account (posted)."""
    debited = credited = 0
    for code in (CLOSE_CODE, REOPEN_CODE):
        moved = await ledger.get_account_transfers(
            tb.AccountFilter(
                account_id=account_id,
                user_data_128=0,
                user_data_64=0,
                user_data_32=0,
                code=code,
                timestamp_min=0,
                timestamp_max=0,
                limit=8189,
                flags=_BOTH,
            )
        )
        for t in moved:
            if int(t.flags) & int(tb.TransferFlags.PENDING):
                continue  # a closing transfer (amount 0, pending): it moves nothing
            if t.debit_account_id == account_id:
                debited += t.amount
            if t.credit_account_id == account_id:
                credited += t.amount
    return debited, credited


async def differences(ledger: Ledger, rows: Sequence[Row]) -> dict[int, tuple[Row, int, int]]:
    """The accounts whose projection differs from the ledger: row, ledger debited, ledger credited."""
    found = {a.id: a for a in await ledger.lookup_accounts([r.account_id for r in rows])}
    out: dict[int, tuple[Row, int, int]] = {}
    for row in rows:
        account = found.get(row.account_id)
        debited = account.debits_posted if account else 0
        credited = account.credits_posted if account else 0
        if row.closings and credited - debited != row.credited - row.debited:
            outside_debited, outside_credited = await _outside_intents(ledger, row.account_id)
            debited, credited = debited - outside_debited, credited - outside_credited
        if credited - debited != row.credited - row.debited:
            out[row.account_id] = (row, debited, credited)
    return out


async def drifted(conn: Conn, ledger: Ledger, rows: Sequence[Row], settle_s: float = 1.0) -> list[Finding]:
    """Findings for the accounts of `rows` that differ, and still differ the same way `settle_s` later."""
    first = await differences(ledger, rows)
    if not first:
        return []
    await asyncio.sleep(settle_s)
    ids = [str(uuid.UUID(int=i)) for i in first]
    again = {
        uuid.UUID(str(r["account_id"])).int: r for r in await conn.fetch(queries.SELECT_PROJECTION_OF, ids)
    }
    rows_again = [
        Row(i, again[i]["debits_posted"], again[i]["credits_posted"], first[i][0].closings)
        for i in first
        if i in again
    ]
    second = await differences(ledger, rows_again)
    return [
        Finding(
            kinds.PROJECTION_DRIFT,
            str(uuid.UUID(int=account_id)),
            None,
            {
                "accountId": str(account_id),
                "projection": {"debitsPosted": row.debited, "creditsPosted": row.credited},
                "ledger": {"debitsPosted": debited, "creditsPosted": credited},
            },
        )
        for account_id, (row, debited, credited) in second.items()
        if account_id in first and first[account_id][1:] == (debited, credited)
    ]
