"""The orphan sweep: every ledger transfer made in the window (`query_transfers` by timestamp, a page
of 8,189 at a time), each one PM must account for (`pm_shared.reconciliation.orphans`). An orphan's
alert is per transfer and per day; it resolves when a repair reverses the transfer (`recheck`)."""

from __future__ import annotations

from typing import Any

import tigerbeetle as tb

from pm_reconciler.sweeps.runner import Page
from pm_reconciler.sweeps.window import Window
from pm_shared.db import Pool
from pm_shared.ledger.api import BATCH_MAX, Ledger
from pm_shared.reconciliation import kinds, orphans


def query(timestamp_min: int, timestamp_max: int, limit: int) -> tb.QueryFilter:
    return tb.QueryFilter(
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        ledger=0,
        code=0,
        timestamp_min=timestamp_min,
        timestamp_max=timestamp_max,
        limit=limit,
        flags=tb.QueryFilterFlags.NONE,
    )


class OrphanSweep:
    name = "orphans"
    kinds = frozenset({kinds.ORPHAN_TRANSFER})

    def __init__(self, pool: Pool, ledger: Ledger, page_size: int = BATCH_MAX) -> None:
        self.pool = pool
        self.ledger = ledger
        self.page_size = min(page_size, BATCH_MAX)

    def alert_period(self, window: Window) -> str:
        return window.day

    async def page(self, window: Window, checkpoint: dict[str, Any]) -> Page:
        start, end = window.ns()
        after = int(checkpoint.get("timestamp", start - 1))
        transfers = await self.ledger.query_transfers(query(after + 1, end - 1, self.page_size))
        async with self.pool.acquire() as conn:
            found = await orphans.orphans(conn, self.ledger, transfers)
        done = len(transfers) < self.page_size
        last = transfers[-1].timestamp if transfers else after
        return Page(
            [orphans.finding(t) for t in found],
            {"timestamp": last},
            done,
            subjects=[],  # an orphan stays one until reversed: `recheck` resolves it
            counts={"transfers": len(transfers), "orphans": len(found)},
        )
