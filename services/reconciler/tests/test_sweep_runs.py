"""A sweep's run against real PostgreSQL (`pm.reconciliation_run`, `pm.reconciliation_alert`): one replica
at a time, a crash mid-way resumed from the checkpoint without reporting a page twice, and the cap.

The sweep here is a test sweep: pages of made-up findings, and a crash where the test says; the runner,
the lease, the checkpoints and the alerts are the real ones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pm_reconciler.sweeps.runner import LeaseLostError, Page, Runner
from pm_reconciler.sweeps.window import Window
from pm_shared.db import Pool
from pm_shared.reconciliation import kinds
from pm_shared.reconciliation.verify import Finding

KIND = kinds.ORPHAN_TRANSFER


class Crash(Exception):
    pass


class PagedSweep:
    """Four pages of two findings each; `crash_at`: the page whose reading dies (once)."""

    kinds = frozenset({KIND})

    def __init__(self, tag: str, crash_at: int | None = None, pages: int = 4, per_page: int = 2) -> None:
        self.name = f"sweeptest-{tag}"
        self.tag = tag
        self.crash_at = crash_at
        self.pages = pages
        self.per_page = per_page
        self.read: list[int] = []
        self.gate: asyncio.Event | None = None

    def alert_period(self, window: Window) -> str:
        return f"sweeptest-{self.tag}"

    async def page(self, window: Window, checkpoint: dict[str, Any]) -> Page:
        n = int(checkpoint.get("page", 0))
        if self.gate is not None:
            await self.gate.wait()
        if n == self.crash_at:
            self.crash_at = None
            raise Crash(n)
        self.read.append(n)
        findings = [Finding(KIND, f"{self.tag}-{n}-{i}", None, {"page": n}) for i in range(self.per_page)]
        return Page(
            findings, {"page": n + 1}, n + 1 == self.pages, subjects=[], counts={"items": self.per_page}
        )


@pytest.fixture
def window() -> Window:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=uuid.uuid4().int % 10_000)
    return Window(start, start + timedelta(hours=1))


async def _alerts(pool: Pool, tag: str) -> list[tuple[str, int]]:
    rows = await pool.fetch(
        "SELECT subject, occurrences FROM pm.reconciliation_alert WHERE period = $1 ORDER BY subject",
        f"sweeptest-{tag}",
    )
    return [(r["subject"], r["occurrences"]) for r in rows]


@pytest.fixture
async def cleanup(db_pool: Pool) -> AsyncIterator[None]:
    yield
    await db_pool.execute(
        "DELETE FROM pm.reconciliation_alert_action WHERE alert_id IN"
        " (SELECT id FROM pm.reconciliation_alert WHERE period LIKE 'sweeptest-%')"
    )
    await db_pool.execute("DELETE FROM pm.reconciliation_alert WHERE period LIKE 'sweeptest-%'")
    await db_pool.execute("DELETE FROM pm.reconciliation_run WHERE sweep LIKE 'sweeptest-%'")


async def test_a_sweep_killed_mid_way_resumes_from_its_checkpoint_and_reports_each_page_once(
    db_pool: Pool, window: Window, cleanup: None
) -> None:
    tag = uuid.uuid4().hex[:8]
    sweep = PagedSweep(tag, crash_at=2)
    first = Runner(db_pool, "replica-a", lease_ms=1_000, cap=100)
    with pytest.raises(Crash):
        await first.run(sweep, window)
    assert sweep.read == [0, 1]
    assert len(await _alerts(db_pool, tag)) == 4  # pages 0 and 1 committed, with their checkpoint
    other = Runner(db_pool, "replica-b", lease_ms=1_000, cap=100)
    assert await other.run(sweep, window) is None  # the dead holder's lease has not run out yet
    await asyncio.sleep(1.2)
    stats = await other.run(sweep, window)
    assert sweep.read == [0, 1, 2, 3]  # resumed at page 2, pages 0 and 1 not read again
    assert stats == {"items": 8, "findings": 8}
    found = await _alerts(db_pool, tag)
    assert len(found) == 8 and all(occurrences == 1 for _, occurrences in found), found
    [run] = await db_pool.fetch(
        "SELECT status, attempts, owner FROM pm.reconciliation_run WHERE sweep = $1", sweep.name
    )
    assert (run["status"], run["attempts"], run["owner"]) == ("DONE", 2, "replica-b")
    assert await first.run(sweep, window) is None  # done: nobody runs it again


async def test_two_replicas_never_run_the_same_sweep_at_once(
    db_pool: Pool, window: Window, cleanup: None
) -> None:
    tag = uuid.uuid4().hex[:8]
    sweeps = [PagedSweep(tag), PagedSweep(tag)]
    gate = asyncio.Event()
    for s in sweeps:
        s.gate = gate
    runners = [Runner(db_pool, f"replica-{i}", lease_ms=30_000, cap=100) for i in range(2)]
    tasks = [asyncio.create_task(r.run(s, window)) for r, s in zip(runners, sweeps, strict=True)]
    await asyncio.sleep(0.3)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert sorted(r is None for r in results) == [False, True], results
    assert sorted(len(s.read) for s in sweeps) == [0, 4]
    assert all(occurrences == 1 for _, occurrences in await _alerts(db_pool, tag))


async def test_a_holder_that_lost_its_lease_cannot_commit_a_page(
    db_pool: Pool, window: Window, cleanup: None
) -> None:
    tag = uuid.uuid4().hex[:8]
    slow = PagedSweep(tag)
    slow.gate = asyncio.Event()
    holder = Runner(db_pool, "slow", lease_ms=1_000, cap=100)
    task = asyncio.create_task(holder.run(slow, window))
    await asyncio.sleep(1.2)  # the lease runs out while the holder is stuck reading its first page
    taker = Runner(db_pool, "fast", lease_ms=30_000, cap=100)
    assert await taker.run(PagedSweep(tag), window) is not None
    slow.gate.set()
    with pytest.raises(LeaseLostError):
        await task
    assert all(occurrences == 1 for _, occurrences in await _alerts(db_pool, tag))


async def test_a_run_over_the_cap_opens_one_meta_alert_and_nothing_else(
    db_pool: Pool, window: Window, cleanup: None
) -> None:
    tag = uuid.uuid4().hex[:8]
    sweep = PagedSweep(tag, pages=1, per_page=5)
    await Runner(db_pool, "capped", lease_ms=30_000, cap=3).run(sweep, window)
    rows = await db_pool.fetch(
        "SELECT kind, subject, detail FROM pm.reconciliation_alert WHERE period = $1", f"sweeptest-{tag}"
    )
    assert [(r["kind"], r["subject"]) for r in rows] == [(kinds.ALERT_CAP, sweep.name)], rows
    assert '"wouldOpen": 5' in rows[0]["detail"]
