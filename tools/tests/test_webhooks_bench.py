"""The webhook benchmark's runs, small: every delivery made beforehand is delivered with no failed
attempt, and every event put on pm:events is delivered and timed (the figures themselves are
`pm bench`'s; nothing here asserts a speed)."""

from __future__ import annotations

from pm_tools.bench import harness, webhooks
from pm_tools.testing import fixtures
from pm_tools.testing.db import server_url


async def test_the_throughput_run_delivers_every_delivery_it_made() -> None:
    made = await webhooks.measure_throughput(server_url(), fixtures.test_redis_url(), 200)
    assert made.failed_attempts == 0
    assert made.sender_s > 0 and made.raw_s > 0


async def test_the_latency_run_times_every_event() -> None:
    redis = fixtures.test_redis_url()
    latencies = await webhooks.measure_latency(server_url(), redis, rate=50.0, seconds=1.0)
    assert len(latencies) == 50
    assert all(0 < s < webhooks.DRAIN_TIMEOUT_S for s in latencies)
    result = webhooks.WebhooksResult(200, 1.0, 1.0, 0, latencies, 50, 50.0, 1.0)
    assert webhooks.section(result).benchmarks[1].p99_ms == harness.percentile(sorted(latencies), 0.99) * 1000
