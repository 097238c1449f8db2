"""Fixtures of the streams runtime's tests: a consumer group on a fresh stream, consumers of it with
fast test timings, and running one until a condition holds (each a factory, as `make_consumer`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from pm_shared.streams import Consumer, Delivery
from pm_shared.streams.names import stream_key
from pm_shared.streams.provision import ensure_group
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.worker import Probe

GROUP = "svc"
"""The consumer group of every consumer these fixtures make."""


MakeConsumer = Callable[..., Consumer[Probe]]


@pytest.fixture
def make_consumer(redis: Redis, reader: Redis, stream_name: str) -> MakeConsumer:
    """Makes consumers of `stream_name` in GROUP (reading with the `reader` fixture unless given one),
    tuned for tests (50 ms blocks, 1 s lease, 0.9 s retry delay, 50 ms between reclaim passes) unless
    `options` say otherwise."""

    default_reader = reader

    def make(
        *,
        name: str = "c1",
        reader: Redis | None = None,
        handle: Callable[[Delivery[Probe]], Awaitable[None]] | None = None,
        handle_batch: Callable[[Sequence[Delivery[Probe]]], Awaitable[Any]] | None = None,
        **options: Any,
    ) -> Consumer[Probe]:
        tuning: dict[str, Any] = {
            "block_ms": 50,
            "lease_ms": 1_000,
            "retry_delay_ms": 900,
            "claim_interval_ms": 50,
        }
        tuning.update(options)
        return Consumer(
            redis=redis,
            reader=reader or default_reader,
            stream=stream_name,
            group=GROUP,
            consumer=name,
            decoder=msgspec.json.Decoder(Probe),
            handle=handle,
            handle_batch=handle_batch,
            **tuning,
        )

    return make


@pytest.fixture
def run_until() -> Callable[..., Awaitable[None]]:
    """Runs a consumer until `done()` is true (at most `timeout` s), then stops it and waits for it."""

    async def run(consumer: Consumer[Any], done: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            await eventually(done, timeout=timeout)
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)

    return run


@pytest.fixture
def pending(redis: Redis, key: str) -> Callable[[], Awaitable[int]]:
    """How many entries of partition 0 GROUP has pending."""

    async def count() -> int:
        return int((await redis.xpending(key, GROUP))["pending"])

    return count


@pytest.fixture
async def key(redis: Redis, stream_name: str) -> str:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, GROUP)
    return key
