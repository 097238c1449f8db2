"""Per-ledger totals: on every ledger, the posted debited of all accounts sum to the posted credited
(double entry), and so do the pending ones. TigerBeetle guarantees it; checking it catches a
backend (or a restore) that does not."""

from __future__ import annotations

import tigerbeetle as tb

from pm_shared.ledger import chart
from pm_shared.ledger.api import BATCH_MAX, Ledger
from pm_shared.reconciliation import kinds
from pm_shared.reconciliation.verify import Finding


async def ledger_totals(ledger: Ledger, number: int) -> dict[str, int]:
    """Sums over every account of ledger `number`, a page of accounts at a time."""
    sums = {"debitsPosted": 0, "creditsPosted": 0, "debitsPending": 0, "creditsPending": 0, "accounts": 0}
    after = 0
    while True:
        page = await ledger.query_accounts(
            tb.QueryFilter(
                user_data_128=0,
                user_data_64=0,
                user_data_32=0,
                ledger=number,
                code=0,
                timestamp_min=after + 1,
                timestamp_max=0,
                limit=BATCH_MAX,
                flags=tb.QueryFilterFlags.NONE,
            )
        )
        for account in page:
            sums["debitsPosted"] += account.debits_posted
            sums["creditsPosted"] += account.credits_posted
            sums["debitsPending"] += account.debits_pending
            sums["creditsPending"] += account.credits_pending
        sums["accounts"] += len(page)
        if len(page) < BATCH_MAX:
            return sums
        after = page[-1].timestamp


async def unbalanced(ledger: Ledger) -> tuple[list[Finding], int]:
    """A finding per ledger whose sums differ, and how many accounts were read."""
    findings: list[Finding] = []
    accounts = 0
    for currency, number in chart.LEDGERS.items():
        sums = await ledger_totals(ledger, number)
        accounts += sums["accounts"]
        if sums["debitsPosted"] != sums["creditsPosted"] or sums["debitsPending"] != sums["creditsPending"]:
            findings.append(
                Finding(kinds.LEDGER_UNBALANCED, str(number), None, {"currency": currency, **sums})
            )
    return findings, accounts
