"""`pm bench`'s streams figures: each runtime figure is paired with its raw redis-py loop, both sides
measured in turns (the timing itself is `pm bench`'s, never asserted here)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

from pm_tools.bench import streams
from pm_tools.testing import fixtures


async def test_each_figure_sits_beside_its_own_baseline_run_in_turns() -> None:
    bench = streams.Bench(fixtures.test_redis_url(), messages=1_000, repeat=2)
    order: list[str] = []
    counter = itertools.count(1)

    def side(name: str) -> Callable[[], Awaitable[float]]:
        async def measure() -> float:
            order.append(name)
            return float(next(counter))

        return measure

    try:
        result = await bench.pair("probe", side("runtime"), side("raw"))
    finally:
        await bench.close()

    assert order == ["runtime", "raw", "runtime", "raw"]
    assert (result.runtime, result.raw) == (3.0, 4.0)  # the best of each side's runs


async def test_a_small_run_gives_every_figure_with_a_positive_rate() -> None:
    results, version = await streams.run(fixtures.test_redis_url(), messages=1_000, repeat=1)

    assert [r.name for r in results] == [
        "consumer, batch handler (msg/s)",
        "consumer, per-message handler (msg/s)",
        "consumer, batch handler vs raw with the ack in the next read's round trip",
        "publisher, one XADD per message (msg/s)",
        "publisher, batches of 100 (publish_many: one script call) vs a raw pipeline (msg/s)",
    ]
    assert all(r.runtime > 0 and r.raw > 0 for r in results)
    assert version.split(".")[0].isdigit()
    assert len(streams.section(results, 1_000, 1).benchmarks) == len(streams.LABELS)
