"""The continuous check: every intent that ends (`pm:events`, SETTLED or FAILED) is checked against
the ledger within seconds, a batch of events at a time (`pm_shared.reconciliation.checker`).

Findings become alerts (period `continuous`, subject the intent); an intent that checks clean resolves
its earlier ones. A FAILED intent's void is sent with its state change, so an authorization still open
right after is not a finding yet: the intent is looked at again once `void_grace_s` has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Histogram

from pm_client.api import TERMINAL_STATES
from pm_shared.db import Pool
from pm_shared.ledger.api import Ledger
from pm_shared.messages import IntentStateChanged
from pm_shared.reconciliation import alerts, checker, kinds
from pm_shared.reconciliation.alerts import Outcome
from pm_shared.streams import Delivery

log = logging.getLogger(__name__)

CHECKED = Counter("pm_reconciler_intents_checked_total", "Terminal intents checked against the ledger.")
FINDINGS = Counter(
    "pm_reconciler_findings_total", "Differences found between PM and the ledger, by kind.", ["kind"]
)
LAG = Histogram(
    "pm_reconciler_check_lag_seconds",
    "From an intent's terminal event to its check against the ledger.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
)
CHECK = "intents"


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class Continuous:
    def __init__(self, pool: Pool, ledger: Ledger, *, void_grace_s: float, cap: int) -> None:
        self.pool = pool
        self.ledger = ledger
        self.void_grace_s = void_grace_s
        self.cap = cap
        self.deferred: dict[str, float] = {}
        """Intents to look at again (FAILED, their void maybe still on its way), with when."""

    async def on_events(self, deliveries: Sequence[Delivery[IntentStateChanged]]) -> None:
        ended = {d.message.intent_id: d.message for d in deliveries if d.message.state in TERMINAL_STATES}
        foreign = [i for i in ended if not _is_uuid(i)]
        if foreign:
            # Not an intent id PM mints: nothing to check, and a retry would not change that.
            log.warning(
                "state changes of %d intents whose ids PM never mints (ignored): %s", len(foreign), foreign
            )
            for intent_id in foreign:
                del ended[intent_id]
        if not ended:
            return
        await self.check(list(ended), run=f"events:{deliveries[0].key}:{deliveries[0].entry_id}")
        now = datetime.now(UTC)
        for event in ended.values():
            LAG.observe(max(0.0, (now - event.produced_at).total_seconds()))

    async def check(self, intent_ids: Sequence[str], *, run: str) -> Outcome:
        """Check these intents now and record what was found (and what passed)."""
        async with self.pool.acquire() as conn:
            intents = await checker.load(conn, intent_ids)
        unknown = set(intent_ids) - {i.id for i in intents}
        if unknown:
            log.warning("state changes of %d intents PM has no record of: %s", len(unknown), sorted(unknown))
        result = await checker.check(self.ledger, intents)
        young = self._young_failures(result, {i.id: i.updated_at for i in intents})
        findings = [f for f in result.findings if f.intent_id not in young]
        checked = [i for i in result.checked if i not in young]
        async with self.pool.acquire() as conn, conn.transaction():
            outcome = await alerts.record(
                conn,
                findings,
                check=CHECK,
                period=kinds.CONTINUOUS,
                kinds_checked=kinds.INTENT_KINDS,
                subjects=checked,
                run=run,
                cap=self.cap,
            )
        CHECKED.inc(len(checked))
        for finding in findings:
            FINDINGS.labels(finding.kind).inc()
        if outcome.opened or outcome.reopened:
            log.warning(
                "%d intents checked: alerts opened %s, reopened %s",
                len(checked),
                outcome.opened,
                outcome.reopened,
            )
        return outcome

    def _young_failures(self, result: checker.Checked, updated: dict[str, datetime]) -> set[str]:
        """FAILED intents whose authorization is still open but whose void may still be on its way."""
        horizon = datetime.now(UTC) - timedelta(seconds=self.void_grace_s)
        young = {
            f.subject
            for f in result.findings
            if f.kind == kinds.PENDING_NOT_RESOLVED and f.intent_id and updated[f.intent_id] > horizon
        }
        due = time.monotonic() + self.void_grace_s
        for intent_id in young:
            self.deferred.setdefault(intent_id, due)
        return young

    async def run_deferred(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Look again at the deferred intents once they are due, until `stop`."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass
            now = time.monotonic()
            due = [i for i, at in self.deferred.items() if at <= now]
            if not due:
                continue
            for intent_id in due:
                del self.deferred[intent_id]
            try:
                await self.check(due, run=f"deferred:{time.time_ns()}")
            except Exception:
                log.exception("deferred check of %d intents failed; they are looked at again", len(due))
                for intent_id in due:
                    self.deferred.setdefault(intent_id, now + interval_s)
