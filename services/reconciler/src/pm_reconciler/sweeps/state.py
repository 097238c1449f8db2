"""The sweeps of the current state (not of a window): projection drift against the ledger, a page of
`pm.account_balance` at a time, and per-ledger totals. Their alerts' period is `current`: a drift
seen again tomorrow is the same alert."""

from __future__ import annotations

import uuid
from typing import Any

from pm_reconciler.sweeps.runner import Page
from pm_reconciler.sweeps.window import Window
from pm_shared.db import Pool
from pm_shared.ledger.api import BATCH_MAX, Ledger
from pm_shared.reconciliation import kinds, projection, queries, totals

CURRENT = "current"


class ProjectionSweep:
    name = "projection"
    kinds = frozenset({kinds.PROJECTION_DRIFT})

    def __init__(self, pool: Pool, ledger: Ledger, page_size: int = BATCH_MAX, settle_s: float = 1.0) -> None:
        self.pool = pool
        self.ledger = ledger
        self.page_size = min(page_size, BATCH_MAX)
        self.settle_s = settle_s

    def alert_period(self, window: Window) -> str:
        return CURRENT

    async def page(self, window: Window, checkpoint: dict[str, Any]) -> Page:
        after = uuid.UUID(checkpoint.get("account", str(uuid.UUID(int=0))))
        async with self.pool.acquire() as conn:
            records = await conn.fetch(queries.SELECT_PROJECTION_PAGE, after, self.page_size)
            rows = [projection.row_of(r) for r in records]
            findings = await projection.drifted(conn, self.ledger, rows, self.settle_s)
        last = str(records[-1]["account_id"]) if records else str(after)
        return Page(
            findings,
            {"account": last},
            len(records) < self.page_size,
            subjects=[str(r["account_id"]) for r in records],
            counts={"accounts": len(records)},
        )


class TotalsSweep:
    name = "totals"
    kinds = frozenset({kinds.LEDGER_UNBALANCED})

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def alert_period(self, window: Window) -> str:
        return CURRENT

    async def page(self, window: Window, checkpoint: dict[str, Any]) -> Page:
        findings, accounts = await totals.unbalanced(self.ledger)
        return Page(findings, {}, True, subjects=None, counts={"accounts": accounts})
