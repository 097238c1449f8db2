"""Reports written on schedule into `PM_RECONCILER_REPORTS_DIR`: yesterday's daily report once the day
is over, last week's once the week is (each written once: an existing file is left alone), and the
gauge of unresolved alerts by kind that Prometheus alerts on."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import Gauge

from pm_shared.db import Pool
from pm_shared.reconciliation import alerts, kinds, reports, settlement

log = logging.getLogger(__name__)

UNRESOLVED = Gauge(
    "pm_reconciliation_alerts_unresolved", "Reconciliation alerts not resolved yet, by kind.", ["kind"]
)


async def refresh_gauge(pool: Pool) -> None:
    async with pool.acquire() as conn:
        counts = await alerts.unresolved_by_kind(conn)
    for kind in sorted(kinds.INTENT_KINDS | {k for s in kinds.SWEEP_KINDS.values() for k in s} | set(counts)):
        UNRESOLVED.labels(kind).set(counts.get(kind, 0))


def due(now: datetime) -> list[reports.Period]:
    """The periods whose report is due at `now`: yesterday, and the ISO week that ended last."""
    yesterday = now.date() - timedelta(days=1)
    last_week = reports.Period.week_of(now.date() - timedelta(days=7))
    return [reports.Period.day(yesterday), last_week]


async def write_due(pool: Pool, directory: str, now: datetime) -> list[Path]:
    """Write each due report not written yet; the paths written."""
    if not directory:
        return []
    written: list[Path] = []
    for period in due(now):
        if (Path(directory) / f"{period}.html").exists():
            continue
        async with pool.acquire() as conn:
            psp = await settlement.psp_totals(conn, period.first_day, period.last_day)
            built = await reports.build(conn, period, psp)
        written += await asyncio.to_thread(reports.write, built, Path(directory))
        log.info("report %s written to %s", period, directory)
    return written
