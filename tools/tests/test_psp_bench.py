"""The PSP benchmark, tiny: P2P and PromptPay withdrawals in one run of the whole fleet, adapter-ipps
and the IPPS sandbox as real processes, on a throw-away database."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from pm_tools.bench import psp, workload
from pm_tools.testing.db import server_url

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("bench_streams_read_briefly")]


async def test_psp_bench_settles_both_types_pays_each_withdrawal_once_and_reports_the_overlap(
    redis_url: str,
) -> None:
    result = await psp.run(server_url(), redis_url, intents=40, latency_ms=10, users=50)

    p2p, withdrawals, adapter = result.p2p, result.withdrawals, result.adapter
    assert (p2p.name, withdrawals.name) == ("P2P", "PROMPTPAY_WITHDRAWAL")
    for run in (p2p, withdrawals):
        # Every intent that went in settled (funded wallets, no sandbox fault amount), none twice.
        assert run.failures == {} and run.unfinished == 0 and run.stall is None, run
        assert run.settled == run.submitted == 20
        assert run.seconds > 0 and run.settled_rate > 0
        assert 0 < run.p50_ms <= run.p95_ms <= run.p99_ms and math.isfinite(run.p99_ms)
        # The stages are consecutive spans of the same timeline: their means add up to the total.
        assert all(s.mean_ms >= 0 for s in run.stages)
        assert sum(s.mean_ms for s in run.stages) == pytest.approx(run.mean_ms, rel=1e-6)
    assert [s.name for s in p2p.stages] == [
        "published → VALIDATED",
        "VALIDATED → AUTHORIZED",
        "AUTHORIZED → SETTLED",
    ]
    # The PSP's stage apart: the second AUTHORIZED row (the adapter's result said IPPS paid).
    assert [s.name for s in withdrawals.stages] == [
        "published → VALIDATED",
        "VALIDATED → AUTHORIZED",
        "AUTHORIZED → AUTHORIZED(paid)",
        "AUTHORIZED(paid) → SETTLED",
    ]
    # The sandbox waits 10 ms before each of the two answers a payout needs.
    assert withdrawals.stages[2].p50_ms >= 2 * 10
    assert adapter.p50_ms >= 2 * 10 and adapter.payouts == 20 and adapter.polls == 0
    assert 1 <= adapter.max_in_flight <= 20 and adapter.mean_in_flight > 0
    # IPPS paid each withdrawal once, the amount the intent carried.
    assert result.sandbox_transfers == 20 and result.sandbox_paid == 20 * workload.AMOUNT
    assert result.serialized_ceiling == pytest.approx(50.0)
    assert result.ratio == pytest.approx(withdrawals.settled_rate / p2p.settled_rate)
    assert result.resumed == 0

    console = Console(record=True, width=300)
    met = psp.report(result, console)
    text = console.export_text()
    assert "P2P" in text and "PROMPTPAY_WITHDRAWAL" in text and "withdrawals/s ÷ P2P/s" in text
    assert f"{withdrawals.settled_rate:,.0f}" in text and f"{result.ratio:.0%}" in text
    assert "serialized ceiling" in text and "50.0/s" in text and "payouts in flight" in text
    assert f"max {adapter.max_in_flight:,}" in text and "20 transfers" in text
    assert "where the time goes" in text and "AUTHORIZED → AUTHORIZED(paid)" in text
    assert met == psp.goals_met(result)

    # The figures for `pm bench`'s report: withdrawals beside P2P and beside the ceiling; the stages.
    section = psp.section(result)
    p2p_row, withdrawal_row, ceiling_row = section.benchmarks
    assert p2p_row.throughput == p2p.settled_rate and withdrawal_row.baseline == p2p.settled_rate
    assert withdrawal_row.ratio == result.ratio and withdrawal_row.p99_ms == withdrawals.p99_ms
    assert withdrawal_row.extra["payouts in flight, max"] == adapter.max_in_flight
    assert ceiling_row.baseline == pytest.approx(50.0) and ceiling_row.ratio == result.over_ceiling
    assert ceiling_row.goal_met == met == section.goals_met
    assert [[t.name for t in s.stages] for s in section.stages] == [
        [s.name for s in p2p.stages],
        [s.name for s in withdrawals.stages],
    ]
