"""After a chaos run: the reconciler's own verdict. Every sweep is asked for (as `pm recon run` asks)
over today, and then no reconciliation alert may be left unresolved: the ledger, PostgreSQL and the
PSPs' settlement reports agree after kills and restarts (issue 17: a clean run raises none).

Alerts the continuous check raised while processes were being killed (an authorization whose void
was held up longer than the grace, say) must have resolved by then: the verify sweep checks every
intent again and resolves what passes. The orchestrator's dead-letter alerts (no subject) are judged
with the dead letters, not here.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from pm_shared import db
from pm_shared.reconciliation import requests

SWEEPS = ("verify", "orphans", "projection", "totals", "settlement")

_UNRESOLVED = """
SELECT id, kind, subject, period, intent_id, detail::text AS detail FROM pm.reconciliation_alert
WHERE status <> 'RESOLVED' AND subject IS NOT NULL ORDER BY id
"""


async def verdict(database_url: str, redis: Redis, timeout_s: float = 120.0) -> dict[str, str]:
    """Ask for every sweep of today and wait for them; the unresolved alerts then (none: all agree),
    or why the sweeps did not finish."""
    asked = [requests.request(sweep, None, "pm chaos") for sweep in SWEEPS]
    for request in asked:
        await requests.enqueue(redis, request)
    conn = await db.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        waiting = {r.sweep: r.period for r in asked}
        while waiting:
            for sweep, period in list(waiting.items()):
                status = await conn.fetchval(
                    "SELECT status FROM pm.reconciliation_run WHERE sweep = $1 AND period = $2", sweep, period
                )
                if status == "DONE":
                    del waiting[sweep]
            if waiting and time.monotonic() > deadline:
                return {f"sweep {s}": f"not done after {timeout_s:g}s" for s in waiting}
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.0)  # the rechecks that follow the verify and orphan sweeps
        rows = await conn.fetch(_UNRESOLVED)
    finally:
        await conn.close()
    return {f"{r['kind']} {r['subject']} ({r['period']})": r["detail"][:300] for r in rows}
