"""The settlement sweep: for one day, each configured PSP's settlement report against our payments
(`pm_shared.reconciliation.settlement`); the day's totals, ours and theirs, go into the run's stats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from pm_reconciler.sweeps.runner import Page
from pm_reconciler.sweeps.window import Window
from pm_shared.db import Pool
from pm_shared.reconciliation import kinds, settlement


class SettlementSweep:
    name = "settlement"
    kinds = kinds.SWEEP_KINDS["settlement"]

    def __init__(self, pool: Pool, psps: Sequence[settlement.Psp], timeout_s: float = 30.0) -> None:
        self.pool = pool
        self.psps = list(psps)
        self.timeout_s = timeout_s

    def alert_period(self, window: Window) -> str:
        return window.day

    async def page(self, window: Window, checkpoint: dict[str, Any]) -> Page:
        day = window.start.date()
        findings = []
        counts: dict[str, int] = {}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client, self.pool.acquire() as conn:
            for psp in self.psps:
                checked = await settlement.check(conn, client, psp, day)
                findings.extend(checked.findings)
                counts.update(checked.stats)
        return Page(findings, {}, True, subjects=None, counts=counts)
