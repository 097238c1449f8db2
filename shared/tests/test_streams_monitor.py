"""Stream gauges: what Redis says, with an unknown lag exported as NaN rather than 0."""

from __future__ import annotations

import math

from prometheus_client import REGISTRY
from redis.asyncio import Redis

from pm_shared.streams.monitor import update_gauges
from pm_shared.streams.names import dlq_key, stream_key
from pm_shared.streams.provision import ensure_group


def gauge(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} not exported"
    return value


async def test_gauges_match_the_stream(redis: Redis, stream_name: str) -> None:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, "g")
    for _ in range(5):
        await redis.xadd(key, {b"m": b"{}"})
    await redis.xreadgroup("g", "c", {key: ">"}, count=2)
    await redis.xadd(dlq_key(stream_name, 0), {b"reason": b"test"})
    await update_gauges(redis, [key])
    assert gauge("pm_stream_length", stream=key) == 5
    assert gauge("pm_stream_dlq_length", stream=key) == 1
    assert gauge("pm_stream_group_lag", stream=key, group="g") == 3
    assert gauge("pm_stream_group_pending", stream=key, group="g") == 2
    assert gauge("pm_stream_group_outstanding", stream=key, group="g") == 5
    assert gauge("pm_stream_oldest_pending_age_seconds", stream=key, group="g") >= 0


async def test_unknown_lag_is_nan(redis: Redis, stream_name: str) -> None:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, "g")
    ids = [await redis.xadd(key, {b"m": b"{}"}) for _ in range(3)]
    await redis.xdel(key, ids[1])
    await update_gauges(redis, [key])
    assert math.isnan(gauge("pm_stream_group_lag", stream=key, group="g"))
    assert math.isnan(gauge("pm_stream_group_outstanding", stream=key, group="g"))


async def test_a_missing_stream_is_skipped(redis: Redis, stream_name: str) -> None:
    await update_gauges(redis, [stream_key(stream_name, 0)])
    assert REGISTRY.get_sample_value("pm_stream_length", {"stream": stream_key(stream_name, 0)}) is None
