"""Benchmark of the embedded ledger engine alone: full-batch `create_transfers`, in a throw-away database.

Commands of 1, 2 (one linked chain) and 10 transfers are packed the way the ledger-writer packs
them, into requests of up to 8189 events, and submitted back to back; the figure is transfers per
second over the whole run (goal on a 2-core machine: ≥ 20,000/s).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import tigerbeetle as tb
from rich.console import Console
from rich.table import Table

from pm_shared.db import drop_database, ensure_database, migrate
from pm_shared.db.pool import with_database
from pm_shared.ledger import BATCH_MAX, open_ledger

GOAL = 20_000
ACCOUNTS = 1_000


@dataclass(frozen=True)
class LedgerResult:
    name: str
    transfers: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.transfers / self.seconds


def _requests(accounts: list[int], per_command: int, total: int) -> list[list[tb.Transfer]]:
    """`total` transfers as commands of `per_command` (linked when > 1), packed whole into requests."""
    requests: list[list[tb.Transfer]] = [[]]
    n = 0
    while n < total:
        if len(requests[-1]) + per_command > BATCH_MAX:
            requests.append([])
        for leg in range(per_command):
            debit, credit = accounts[(n + leg) % len(accounts)], accounts[(n + leg + 1) % len(accounts)]
            linked = tb.TransferFlags.LINKED if leg < per_command - 1 else tb.TransferFlags.NONE
            requests[-1].append(
                tb.Transfer(
                    id=tb.id(),
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=1,
                    ledger=764,
                    code=1,
                    flags=linked,
                )
            )
        n += per_command
    return requests


async def run(server_dsn: str, transfers: int) -> list[LedgerResult]:
    dsn = with_database(server_dsn, f"pm_bench_{secrets.token_hex(4)}")
    await ensure_database(dsn)
    try:
        await migrate(dsn)
        ledger = await open_ledger("embedded+" + dsn)
        try:
            accounts = [tb.id() for _ in range(ACCOUNTS)]
            for start in range(0, ACCOUNTS, BATCH_MAX):
                chunk = accounts[start : start + BATCH_MAX]
                await ledger.create_accounts([tb.Account(id=i, ledger=764, code=1) for i in chunk])
            results = []
            for per_command in (1, 2, 10):
                requests = _requests(accounts, per_command, transfers)
                started = time.perf_counter()
                for request in requests:
                    statuses = {r.status for r in await ledger.create_transfers(request)}
                    if statuses != {tb.CreateTransferStatus.CREATED}:
                        raise RuntimeError(f"benchmark transfers failed: {statuses}")
                elapsed = time.perf_counter() - started
                count = sum(len(r) for r in requests)
                results.append(LedgerResult(f"embedded engine, commands of {per_command}", count, elapsed))
            return results
        finally:
            await ledger.close()
    finally:
        await drop_database(dsn)


def report(results: list[LedgerResult], console: Console) -> bool:
    table = Table(title=f"Embedded ledger engine, bare create_transfers (requests of ≤ {BATCH_MAX} events)")
    table.add_column("benchmark")
    table.add_column("transfers", justify="right")
    table.add_column("transfers/s", justify="right")
    table.add_column(f"goal ≥ {GOAL:,}/s")
    ok = True
    for r in results:
        met = r.rate >= GOAL
        ok &= met
        table.add_row(r.name, f"{r.transfers:,}", f"{r.rate:,.0f}", "met" if met else "MISSED")
    console.print(table)
    return ok
