"""A verify sweep killed mid-way (SIGKILL of the pm-reconciler process) is finished by another
replica from its checkpoint, and reports each finding once.

A database of its own holds 10,000 settled intents made in bulk (`pm_tools.bench.recon_seed`) and
five whose authorization was posted with amount 0 (`pm_tools.testing.history`), all on one day. A
reconciler is asked for that day's verify sweep in small pages and killed once it has committed some;
a second one, which never got the request, finds the run with its holder's lease run out and resumes
it. (Two replicas racing for one sweep, and the lease fencing: services/reconciler/tests.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pm_shared import db
from pm_shared.ledger import open_ledger
from pm_shared.reconciliation import kinds, requests
from pm_shared.streams.connection import connect
from pm_tools.bench import recon_seed
from pm_tools.testing import fixtures, history
from pm_tools.testing.db import new_database_url, run
from pm_tools.testing.fleet import Fleet

pytestmark = pytest.mark.slow

DAY = datetime(2026, 1, 5, tzinfo=UTC)
INTENTS = 10_000
BROKEN = 5
ENV = {
    "PM_RECONCILER_SWEEP_PAGE": "300",
    "PM_RECONCILER_LEASE_MS": "1500",
    "PM_RECONCILER_SWEEP_INTERVAL_S": "0.5",
    "PM_RECONCILER_SWEEP_LOOKBACK_WINDOWS": "2",
}


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[str, list[str]]]:
    url = new_database_url()

    async def make() -> list[str]:
        await db.ensure_database(url)
        await db.migrate(url)
        ledger = await open_ledger("embedded+" + url)
        conn = await db.connect(url)
        try:
            await recon_seed.seed(conn, ledger, INTENTS, DAY)
            payer, payee = "bench-recon-1", "bench-recon-2"  # funded wallets of the seed
            at = DAY.replace(hour=12)
            return [
                await history.zero_posted(conn, ledger, recon_seed.KEY_ID, payer, payee, 100 + n, at)
                for n in range(BROKEN)
            ]
        finally:
            await conn.close()
            await ledger.close()

    broken = run(make())
    try:
        yield url, broken
    finally:
        run(db.drop_database(url, force=True))


async def _run_row(url: str, period: str) -> dict[str, Any] | None:
    conn = await db.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT * FROM pm.reconciliation_run WHERE sweep = 'verify' AND period = $1", period
        )
        return dict(row) if row else None
    finally:
        await conn.close()


async def test_a_sweep_killed_mid_way_is_resumed_by_another_replica_and_reports_once(
    seeded: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, broken = seeded
    fleet = Fleet(fixtures.test_redis_url(), url, tmp_path)
    redis = connect(fixtures.test_redis_url())
    try:
        await redis.delete(requests.REQUESTS_KEY)
        first = fleet.start("reconciler", env={**ENV, "PM_RECONCILER_SWEEP_INTERVAL_S": "3600"})
        await first.wait_ready()
        asked = requests.request("verify", DAY.date().isoformat(), "tests")
        await requests.enqueue(redis, asked)
        deadline = time.monotonic() + 60
        while True:  # some pages committed, far from all
            row = await _run_row(url, asked.period)
            done_so_far = json.loads(row["stats"]).get("intents", 0) if row else 0
            if done_so_far >= 1_500:
                break
            assert time.monotonic() < deadline, f"no progress: {row}; {first.tail()}"
            await asyncio.sleep(0.02)
        first.popen.kill()
        first.popen.wait(10)
        killed = await _run_row(url, asked.period)
        assert killed is not None and killed["status"] == "RUNNING", killed
        assert json.loads(killed["stats"])["intents"] < INTENTS + BROKEN

        second = fleet.start("reconciler", env=ENV)
        deadline = time.monotonic() + 90
        while (row := await _run_row(url, asked.period)) is None or row["status"] != "DONE":
            assert time.monotonic() < deadline, f"not resumed: {row}; {second.tail()}"
            await asyncio.sleep(0.2)
        assert row["attempts"] == 2 and row["owner"] != killed["owner"], row
        stats = json.loads(row["stats"])
        assert (stats["intents"], stats["findings"]) == (INTENTS + BROKEN, BROKEN), stats
        conn = await db.connect(url)
        try:
            # (The seed funds its wallets straight on the ledger: the projection sweep the second
            # replica's schedule runs has its own say about those; only the verify sweep's are ours.)
            found = await conn.fetch(
                "SELECT kind, subject, occurrences FROM pm.reconciliation_alert"
                " WHERE period = $1 ORDER BY id",
                kinds.CONTINUOUS,
            )
        finally:
            await conn.close()
        assert sorted((r["kind"], r["subject"], r["occurrences"]) for r in found) == sorted(
            (kinds.POSTED_ZERO, intent_id, 1) for intent_id in broken
        ), found
    finally:
        fleet.kill_all()
        await redis.delete(requests.REQUESTS_KEY)
        await redis.aclose()
