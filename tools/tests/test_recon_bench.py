"""The reconciliation benchmark's parts: the verify sweep over seeded intents finds nothing wrong and
counts each one, and p99 read from a histogram's buckets as Prometheus does. (The continuous check's
lag on the whole fleet runs in `pm bench`; the lag metric is tested in tests/test_reconciliation.py.)"""

from __future__ import annotations

import math

from pm_tools.bench import recon
from pm_tools.testing.db import server_url


def test_quantiles_are_interpolated_within_buckets() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 99.0, 2.0: 100.0, math.inf: 100.0}
    assert recon.quantile(0.5, buckets) == 0.1
    assert abs((recon.quantile(0.99, buckets) or 0) - 1.0) < 1e-9
    assert abs((recon.quantile(0.7, buckets) or 0) - 0.3) < 1e-9  # halfway through (0.1, 0.5]
    assert recon.quantile(0.99, {0.1: 0.0, math.inf: 0.0}) is None


async def test_the_verify_sweep_checks_every_seeded_intent_and_finds_nothing() -> None:
    intents, transfers, sweep_s, lookup_s, findings = await recon.measure_verify(server_url(), 3_000)
    assert (intents, findings) == (3_000, 0)
    assert transfers == 3_000 * 3 // 2  # a principal's post, and every second one a fee's
    assert sweep_s > 0 and lookup_s > 0
