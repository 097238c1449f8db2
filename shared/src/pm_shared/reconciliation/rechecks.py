"""Looking again at what unresolved alerts are about: an alert resolves once its subject checks clean
(an intent repaired, an orphan reversed). A recheck only resolves; it never opens or counts an alert
(the continuous check and the sweeps do)."""

from __future__ import annotations

from collections import defaultdict

from pm_shared.db import Pool
from pm_shared.ledger.api import Ledger
from pm_shared.reconciliation import alerts, checker, kinds, orphans, queries


async def intents(pool: Pool, ledger: Ledger) -> list[int]:
    """Check again every intent with an unresolved per-intent alert; the ids of the alerts resolved."""
    async with pool.acquire() as conn:
        ids = [
            r["intent_id"]
            for r in await conn.fetch(queries.SELECT_ALERTED_INTENTS, sorted(kinds.INTENT_KINDS))
        ]
        if not ids:
            return []
        result = await checker.check(ledger, await checker.load(conn, ids))
        async with conn.transaction():
            return await alerts.resolve_passed(
                conn,
                period=kinds.CONTINUOUS,
                kinds_checked=kinds.INTENT_KINDS,
                subjects=result.checked,
                found={(f.kind, f.subject) for f in result.findings},
            )


async def orphan_transfers(pool: Pool, ledger: Ledger, limit: int = 8_000) -> list[int]:
    """Look again at unresolved orphans: the ids of the alerts resolved (their transfer accounted for)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(queries.SELECT_UNRESOLVED_OF_KIND, kinds.ORPHAN_TRANSFER, limit)
        if not rows:
            return []
        found = await checker.lookup(ledger, [int(r["subject"]) for r in rows])
        still = {str(t.id) for t in await orphans.orphans(conn, ledger, list(found.values()))}
        by_period: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            by_period[row["period"]].append(row["subject"])
        resolved: list[int] = []
        async with conn.transaction():
            for period, subjects in by_period.items():
                resolved += await alerts.resolve_passed(
                    conn,
                    period=period,
                    kinds_checked={kinds.ORPHAN_TRANSFER},
                    subjects=subjects,
                    found={(kinds.ORPHAN_TRANSFER, s) for s in subjects if s in still},
                )
        return resolved
