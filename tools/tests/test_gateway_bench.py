"""The gateway benchmark end to end, tiny: both real processes, a throw-away database, Redis db 14."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from pm_tools.bench import gateway
from pm_tools.testing.db import server_url

pytestmark = pytest.mark.slow


async def test_gateway_bench_measures_both_endpoints_and_every_intent_lands(redis_url: str) -> None:
    result = await gateway.run(server_url(), redis_url, concurrency=4, warmup_s=0.2, duration_s=0.5, repeat=1)

    for side in (result.bare, result.gateway):
        assert side.errors == 0, side.first_error
        assert side.requests > 0 and side.rate > 0
        assert 0 < side.p50_ms <= side.p99_ms and math.isfinite(side.p99_ms)
        assert side.accepted >= side.requests
    # Every 202, warm-up included, is one intent on the stream: nothing accepted was lost.
    assert result.landed == result.accepted > 0
    assert result.clean
    assert result.ratio == pytest.approx(result.gateway.rate / result.bare.rate)

    console = Console(record=True, width=300)
    met = gateway.report(result, console)
    text = console.export_text()
    assert "gateway (signed)" in text and "bare (unsigned, XADD only)" in text
    assert f"{result.gateway.rate:,.0f}" in text and f"{result.ratio:.1%}" in text
    assert ("met" if met else "MISSED") in text
    assert f"{result.landed:,} of {result.accepted:,} accepted intents" in text

    # The figure for `pm bench`'s report: the gateway beside the bare endpoint of the same run.
    (row,) = gateway.section(result).benchmarks
    assert (row.throughput, row.baseline, row.ratio) == (result.gateway.rate, result.bare.rate, result.ratio)
    assert row.p99_ms == result.gateway.p99_ms and row.goal_met == met
    assert row.extra["bare p99 ms"] == result.bare.p99_ms
