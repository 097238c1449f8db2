"""Pytest fixtures for real Redis: clients on a scratch database, unique stream names, eventual assertions."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis

from pm_shared.streams.connection import connect

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Tests use their own logical database so they never touch a running fleet's streams; two suites run
# side by side on one machine each take another (`PM_TEST_REDIS_DB`).
TEST_REDIS_DB = int(os.environ.get("PM_TEST_REDIS_DB", "9"))


def test_redis_url() -> str:
    """The Redis URL tests use: `PM_REDIS_URL`'s server, database `TEST_REDIS_DB` (9 by default)."""
    parts = urlsplit(os.environ.get("PM_REDIS_URL", DEFAULT_REDIS_URL))
    return urlunsplit((parts.scheme, parts.netloc, f"/{TEST_REDIS_DB}", parts.query, parts.fragment))


@pytest.fixture
def redis_url() -> str:
    return test_redis_url()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def reader(redis_url: str) -> AsyncIterator[Redis]:
    """A client for blocking reads (no command retries)."""
    client = connect(redis_url, blocking_reads=True)
    yield client
    await client.aclose()


@pytest.fixture
async def stream_name(redis: Redis) -> AsyncIterator[str]:
    """A logical stream name no other test uses; its keys are deleted afterwards."""
    name = f"test:{uuid.uuid4().hex[:12]}"
    yield name
    keys = [k async for k in redis.scan_iter(match=f"{{{name}:*")]
    if keys:
        await redis.delete(*keys)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> None:
    """Wait until `check()` is true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {timeout}s: {what or check}")
        await asyncio.sleep(interval)
