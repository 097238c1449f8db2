"""Running one sweep of one period: claimed by exactly one replica, a page at a time, resumable.

A replica claims the (sweep, period) row of `pm.reconciliation_run` (a new one, or one whose holder's
lease ran out: it resumes from the checkpoint). Each page's alerts and the checkpoint after it commit
in one transaction, which also renews the lease and fails when another replica took the sweep over —
so a sweep killed mid-way resumes where it stopped, and no page is reported twice.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from pm_reconciler.sweeps.window import Window
from pm_shared.db import Pool
from pm_shared.reconciliation import alerts, queries
from pm_shared.reconciliation.verify import Finding

log = logging.getLogger(__name__)

SWEEPS_DONE = Counter("pm_reconciler_sweeps_total", "Sweeps run to the end, by sweep.", ["sweep"])
SWEEP_PAGES = Counter("pm_reconciler_sweep_pages_total", "Sweep pages committed, by sweep.", ["sweep"])
LAST_SWEEP = Gauge(
    "pm_reconciler_sweep_last_success_timestamp_seconds", "When each sweep last ran to the end.", ["sweep"]
)


class LeaseLostError(Exception):
    """Another replica took the sweep over (this one was too slow to renew its lease)."""


@dataclass
class Page:
    """What one page of a sweep found, where to go on from, and whether the sweep is done."""

    findings: list[Finding]
    checkpoint: dict[str, Any]
    done: bool
    subjects: list[str] | None = field(default_factory=list)
    """Whose alerts of the sweep's kinds passed if not found (None: every alert of the period)."""
    counts: Mapping[str, int] = field(default_factory=dict)


class Sweep(Protocol):
    name: str
    kinds: frozenset[str]

    def alert_period(self, window: Window) -> str: ...
    async def page(self, window: Window, checkpoint: dict[str, Any]) -> Page: ...


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Runner:
    pool: Pool
    owner: str
    lease_ms: int
    cap: int

    async def run(self, sweep: Sweep, window: Window, period: str | None = None) -> dict[str, int] | None:
        """Run (or resume) `sweep` over `window` as run `period` (default: the window's key); its stats
        when done, None when another replica holds it or it was done already."""
        key = period or window.key
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(queries.CLAIM_RUN, sweep.name, key, self.owner, self.lease_ms)
        if row is None:
            return None
        run_id = row["id"]
        checkpoint: dict[str, Any] = _decode(row["checkpoint"])
        stats: dict[str, int] = {k: int(v) for k, v in _decode(row["stats"]).items()}
        if row["attempts"] > 1:
            log.info(
                "sweep %s %s resumed (attempt %d) from %s",
                sweep.name,
                key,
                row["attempts"],
                checkpoint,
            )
        while True:
            page = await sweep.page(window, checkpoint)
            for name, n in page.counts.items():
                stats[name] = stats.get(name, 0) + n
            stats["findings"] = stats.get("findings", 0) + len(page.findings)
            async with self.pool.acquire() as conn, conn.transaction():
                renewed = await conn.fetchval(
                    queries.CHECKPOINT_RUN,
                    run_id,
                    self.owner,
                    json.dumps(page.checkpoint),
                    json.dumps(stats),
                    self.lease_ms,
                )
                if renewed is None:
                    raise LeaseLostError(f"{sweep.name} {key}")
                await alerts.record(
                    conn,
                    page.findings,
                    check=sweep.name,
                    period=sweep.alert_period(window),
                    kinds_checked=sweep.kinds,
                    subjects=page.subjects,
                    run=f"{sweep.name}:{key}",
                    cap=self.cap,
                )
                if page.done:
                    await conn.fetchval(queries.FINISH_RUN, run_id, self.owner, json.dumps(stats))
            SWEEP_PAGES.labels(sweep.name).inc()
            checkpoint = page.checkpoint
            if page.done:
                SWEEPS_DONE.labels(sweep.name).inc()
                LAST_SWEEP.labels(sweep.name).set_to_current_time()
                log.info("sweep %s %s done: %s", sweep.name, key, stats)
                return stats


def _decode(value: object) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        decoded = json.loads(value)
        assert isinstance(decoded, dict)
        return decoded
    return dict(value) if isinstance(value, Mapping) else {}
