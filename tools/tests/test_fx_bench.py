"""The exchange benchmark, tiny: the saga's fleet as real processes with THB and USD wallets, a rate and
funded liquidity set through the admin API, exchanges (quote → FX_EXCHANGE → SETTLED) beside P2P in
one run, with the quote's latency."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from pm_tools.bench import fx
from pm_tools.testing.db import server_url

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("bench_streams_read_briefly")]


async def test_fx_bench_settles_every_exchange_and_payment_and_compares_them(redis_url: str) -> None:
    # Half-second windows: four workers settle a few dozen flows of each kind in each.
    result = await fx.run(
        server_url(), redis_url, concurrency=4, seconds=0.5, rounds=2, warmup_s=0.2, users=20
    )

    assert len(result.p2p) == len(result.fx) == 2
    for phase in (*result.p2p, *result.fx):
        # Every flow, warm-up and drain included, made an intent that settled: the THB wallets are
        # funded, the USD wallets open, the liquidity funded and the rate set.
        assert phase.clean, phase.problems()
        assert phase.errors == 0 and phase.failures == {} and phase.unfinished == 0
        assert phase.settled == phase.flows > 0
        assert 0 < phase.settled_in_window <= phase.flows and phase.rate > 0
        assert phase.run.settled == phase.run.submitted > 0
        assert 0 < phase.run.p50_ms <= phase.run.p95_ms <= phase.run.p99_ms
        assert math.isfinite(phase.run.p99_ms)
        assert sum(s.mean_ms for s in phase.run.stages) == pytest.approx(phase.run.mean_ms, rel=1e-6)
        # Both types are priced by the same rules: the fee engine ran for each.
        assert phase.run.fee_eval_us is not None and phase.run.fee_eval_us > 0
    for phase in result.fx:
        assert phase.run.stages[0].name == "quote + exchange → CREATED (gateway)"
        exchange, quote = phase.from_intake, phase.first_request
        # The same flows, from the exchange's own request, which comes after its quote.
        assert exchange is not None and exchange.settled == phase.run.settled
        assert 0 < exchange.p50_ms <= phase.run.p50_ms and exchange.p99_ms <= phase.run.p99_ms
        # Every timed flow's quote was timed, client-side.
        assert quote is not None and quote.count == phase.run.submitted
        assert 0 < quote.p50_ms <= quote.p95_ms <= quote.p99_ms
    assert all(phase.from_intake is None and phase.first_request is None for phase in result.p2p)
    # The ratio is of the two measured figures, the best phase of each.
    assert result.best_fx.rate == max(p.rate for p in result.fx)
    assert result.ratio == pytest.approx(result.best_fx.rate / result.best_p2p.rate)
    assert result.quote is result.best_fx.first_request

    console = Console(record=True, width=320)
    met = fx.report(result, console)
    text = console.export_text()
    assert "FX_EXCHANGE" in text and "FX/s ÷ P2P/s" in text and f"{result.ratio:.1%}" in text
    assert "quote p50 / p99" in text and "quote + exchange → CREATED" in text
    assert met == fx.goals_met(result) == (result.ratio >= fx.GOAL)

    section = fx.section(result)
    p2p_row, fx_row, quote_row = section.benchmarks
    assert (p2p_row.throughput, fx_row.throughput) == (result.best_p2p.rate, result.best_fx.rate)
    assert fx_row.baseline == result.best_p2p.rate and fx_row.ratio == result.ratio
    assert fx_row.goal == "≥ 70% of P2P" and fx_row.goal_met == met == section.goals_met
    assert fx_row.extra["exchange → SETTLED p50 ms"] > 0
    assert result.quote is not None
    assert (quote_row.p50_ms, quote_row.p99_ms) == (result.quote.p50_ms, result.quote.p99_ms)
    assert quote_row.throughput is None and quote_row.goal is None
    assert [(s.group, s.name) for s in section.stages] == [(fx.GROUP, "P2P"), (fx.GROUP, "FX_EXCHANGE")]
