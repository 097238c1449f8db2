"""The verify sweep: every intent that ended in the window, checked against the ledger again (the
continuous check's backstop: an event lost or a check that failed is made good here). Its findings
are the continuous check's, under the same alerts (period `continuous`)."""

from __future__ import annotations

import contextlib
import gc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pm_reconciler.sweeps.runner import Page
from pm_reconciler.sweeps.window import Window
from pm_shared.db import Pool
from pm_shared.intents.record import IntentRow
from pm_shared.ledger.api import Ledger
from pm_shared.reconciliation import checker, kinds, queries

_ZERO = uuid.UUID(int=0)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A page makes a few hundred thousand short-lived objects, all freed by reference counting; the
    cyclic collector walking them meanwhile cost a fifth of a sweep (measured over 200,000 intents).
    It runs again, and catches up, once the page is checked (a page takes well under a second)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class VerifySweep:
    name = "verify"
    kinds = kinds.INTENT_KINDS

    def __init__(self, pool: Pool, ledger: Ledger, page_size: int, void_grace_s: float = 10.0) -> None:
        self.pool = pool
        self.ledger = ledger
        self.page_size = page_size
        self.void_grace_s = void_grace_s

    def alert_period(self, window: Window) -> str:
        return kinds.CONTINUOUS

    async def page(self, window: Window, checkpoint: dict[str, Any]) -> Page:
        after = datetime.fromisoformat(checkpoint["at"]) if "at" in checkpoint else window.start
        after_id = uuid.UUID(checkpoint["id"]) if "id" in checkpoint else _ZERO
        with _collector_paused():
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    queries.SELECT_TERMINAL_PAGE, window.start, window.end, after, after_id, self.page_size
                )
            intents = [IntentRow.from_record(r) for r in rows]
            result = await checker.check(self.ledger, intents)
        # As in the continuous check: a FAILED intent this young may still have its void on the way.
        horizon = datetime.now(UTC) - timedelta(seconds=self.void_grace_s)
        young = {i.id for i in intents if i.updated_at > horizon}
        waiting = {
            f.subject for f in result.findings if f.kind == kinds.PENDING_NOT_RESOLVED and f.subject in young
        }
        result.findings = [f for f in result.findings if f.subject not in waiting]
        result.checked = [i for i in result.checked if i not in waiting]
        done = len(rows) < self.page_size
        next_checkpoint = (
            {"at": rows[-1]["updated_at"].isoformat(), "id": str(rows[-1]["id"])} if rows else checkpoint
        )
        return Page(
            result.findings,
            next_checkpoint,
            done,
            subjects=result.checked,
            counts={"intents": len(result.checked), "transfers": result.transfers},
        )
