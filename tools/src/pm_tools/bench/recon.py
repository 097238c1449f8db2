"""Benchmark of reconciliation (issue 17): how fast a full sweep verifies settled intents against the
ledger, and how far the continuous check runs behind `pm:events` under load.

- **verify sweep**: `intents` settled intents made in bulk for one day (`recon_seed`: the rows and
  ledger transfers a settlement leaves), then the reconciler's own verify sweep (`Runner` +
  `VerifySweep`, as pm-reconciler runs it, in this process with its garbage-collector settings) over
  that day: intents verified per second (goal ≥ 20,000/s). Baseline, measured in the same run on the
  same ledger: `lookup_transfers` alone for the transfers the sweep looks up (each intent's posts),
  8,189 ids per request (the ledger's share of the work), in intents per second.
- **continuous check**: the saga's fleet (`services`: ledger-writer, orchestrator, reconciler, gateway
  as real processes), P2P intents offered over signed HTTP at `rate`/s for `seconds`; the reconciler's
  `pm_reconciler_check_lag_seconds` (terminal event produced → checked) read before and after, its p99
  interpolated within the histogram's buckets as Prometheus' histogram_quantile does (goal ≤ 2 s).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from pm_reconciler.sweeps.runner import Runner
from pm_reconciler.sweeps.verify import VerifySweep
from pm_reconciler.sweeps.window import Window
from pm_shared import db
from pm_shared.ledger import open_ledger
from pm_shared.ledger.api import BATCH_MAX
from pm_shared.runtime import tune_gc
from pm_tools.bench import harness, model, offer, recon_seed, runs, services, workload

INTENTS = 200_000
VERIFY_GOAL = 20_000.0
RATE = 300.0
SECONDS = 20.0
LAG_GOAL_S = 2.0
DAY = datetime(2026, 1, 5, tzinfo=UTC)
LAG = "pm_reconciler_check_lag_seconds"


@dataclass(frozen=True)
class ReconResult:
    intents: int
    transfers: int
    sweep_s: float
    lookup_s: float
    findings: int
    lag_p50_s: float | None
    lag_p99_s: float | None
    checked: int
    rate: float
    seconds: float

    @property
    def verified_rate(self) -> float:
        return self.intents / self.sweep_s

    @property
    def lookup_rate(self) -> float:
        return self.intents / self.lookup_s


async def measure_verify(server_dsn: str, intents: int) -> tuple[int, int, float, float, int]:
    """(intents, transfers, sweep seconds, lookup-only seconds, findings) on a database of its own."""
    async with harness.database(server_dsn, "recon") as dsn:
        writer = await open_ledger("embedded+" + dsn)
        conn = await db.connect(dsn, application_name="pm-bench-recon")
        try:
            _, transfer_ids = await recon_seed.seed(conn, writer, intents, DAY)
        finally:
            await conn.close()
            await writer.close()
        tune_gc()  # as pm-reconciler starts: what the seeding left alive is out of the collector's way
        pool = await db.create_pool(dsn, min_size=1, max_size=4, application_name="pm-bench-recon")
        ledger = await open_ledger("embedded+" + dsn, readonly=True)
        try:
            started = time.perf_counter()
            for at in range(0, len(transfer_ids), BATCH_MAX):
                await ledger.lookup_transfers(transfer_ids[at : at + BATCH_MAX])
            lookup_s = time.perf_counter() - started
            runner = Runner(pool, "pm-bench", lease_ms=120_000, cap=200)
            started = time.perf_counter()
            stats = await runner.run(
                VerifySweep(pool, ledger, 8_000, 0.0), Window.of_day(DAY.date().isoformat())
            )
            sweep_s = time.perf_counter() - started
        finally:
            await ledger.close()
            await pool.close()
    assert stats is not None
    return stats["intents"], len(transfer_ids), sweep_s, lookup_s, stats["findings"]


async def _lag_histogram(base: str) -> tuple[dict[float, float], float]:
    """The reconciler's lag histogram now: cumulative buckets (upper bound → count), and the count."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(base + "/metrics")).text
    buckets: dict[float, float] = {}
    count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LAG + "_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == LAG + "_count":
                count += sample.value
    return buckets, count


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative `buckets` (upper bound → count), interpolating linearly."""
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / max(count - below, 1e-9))
        lower, below = bound, count
    return lower


async def _lag(server_dsn: str, redis_url: str, rate: float, seconds: float) -> tuple[float | None, ...]:
    """(p50, p99, intents checked) of the continuous check while P2P intents come at `rate`/s."""
    rng = secrets.SystemRandom()
    async with services.running(server_dsn, redis_url, "recon", orchestrators=1, users=workload.USERS) as rig:
        await runs.quiet(rig.conn, rig.redis)
        b0, c0 = await _lag_histogram(rig.fleet.reconciler)
        bodies = [workload.body(p, q) for p, q in workload.pairs(rig.users, round(rate * seconds), rng)]
        await offer.offer(rig.fleet.gateway, rig.key, bodies, rate)
        await runs.wait_terminal(rig.conn, rig.redis)
        deadline = time.monotonic() + 30
        while True:  # until the reconciler has checked every one (or 30 s)
            b1, c1 = await _lag_histogram(rig.fleet.reconciler)
            if c1 - c0 >= len(bodies) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    delta = {le: b1.get(le, 0.0) - b0.get(le, 0.0) for le in b1}
    return quantile(0.5, delta), quantile(0.99, delta), c1 - c0


async def run(
    server_dsn: str, redis_url: str, *, intents: int = INTENTS, rate: float = RATE, seconds: float = SECONDS
) -> ReconResult:
    verified, transfers, sweep_s, lookup_s, findings = await measure_verify(server_dsn, intents)
    p50, p99, checked = await _lag(server_dsn, redis_url, rate, seconds)
    return ReconResult(
        verified, transfers, sweep_s, lookup_s, findings, p50, p99, int(checked or 0), rate, seconds
    )


def goals_met(result: ReconResult) -> bool:
    return (
        result.findings == 0
        and result.verified_rate >= VERIFY_GOAL
        and result.lag_p99_s is not None
        and result.lag_p99_s <= LAG_GOAL_S
    )


def section(result: ReconResult) -> model.Section:
    sweep = model.Benchmark(
        name=f"verify sweep over {result.intents:,} settled intents ({result.transfers:,} posts looked up)",
        unit="intents/s",
        throughput=result.verified_rate,
        baseline_name="lookup_transfers alone, the same posts",
        baseline=result.lookup_rate,
        ratio=result.verified_rate / result.lookup_rate,
        goal=f"≥ {VERIFY_GOAL:,.0f} intents/s",
        goal_met=result.verified_rate >= VERIFY_GOAL and result.findings == 0,
        extra={"findings": float(result.findings), "sweep seconds": result.sweep_s},
    )
    lag = model.Benchmark(
        name=f"continuous check behind pm:events at {result.rate:g} intents/s offered",
        unit="intents checked",
        throughput=float(result.checked),
        p50_ms=None if result.lag_p50_s is None else result.lag_p50_s * 1000,
        p99_ms=None if result.lag_p99_s is None else result.lag_p99_s * 1000,
        goal=f"p99 ≤ {LAG_GOAL_S:g} s",
        goal_met=result.lag_p99_s is not None and result.lag_p99_s <= LAG_GOAL_S,
        note="p50/p99 interpolated within pm_reconciler_check_lag_seconds' buckets",
    )
    return model.Section(
        name="reconciliation",
        description=(
            "The reconciler's verify sweep (in this process, as pm-reconciler runs it) over settled "
            "intents made in bulk for one day, beside lookup_transfers alone for the same transfers; "
            f"then the continuous check's lag on the saga's fleet with P2P offered at {result.rate:g}/s "
            f"for {result.seconds:g} s."
        ),
        benchmarks=[sweep, lag],
        goals_met=goals_met(result),
    )


def table(result: ReconResult) -> Table:
    shown = Table(title="Reconciliation")
    for column in ("figure", "value", "baseline", "goal"):
        shown.add_column(column)
    shown.add_row(
        f"verify sweep, {result.intents:,} intents",
        f"{result.verified_rate:,.0f} intents/s ({result.findings} findings)",
        f"lookup only {result.lookup_rate:,.0f} intents/s ({result.verified_rate / result.lookup_rate:.0%})",
        f"≥ {VERIFY_GOAL:,.0f}/s",
    )
    p99 = "—" if result.lag_p99_s is None else f"{result.lag_p99_s:.3f} s"
    p50 = "—" if result.lag_p50_s is None else f"{result.lag_p50_s:.3f} s"
    shown.add_row(
        f"check lag at {result.rate:g}/s", f"p50 {p50}, p99 {p99}", f"{result.checked:,} checked", "p99 ≤ 2 s"
    )
    return shown
