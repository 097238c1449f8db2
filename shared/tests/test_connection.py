"""`connect()` pins every client setting explicitly, and a blocking read outlives its BLOCK."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pm_shared.settings import CommonSettings
from pm_shared.streams.connection import connect
from pm_shared.streams.names import stream_key
from pm_shared.streams.provision import ensure_group

URL = "redis://127.0.0.1:6379/9"


def max_block_ms() -> int:
    """The longest BLOCK a consumer may be configured with (`PM_STREAM_BLOCK_MS`'s upper bound)."""
    info = msgspec.inspect.type_info(CommonSettings)
    assert isinstance(info, msgspec.inspect.StructType)
    (block,) = [f for f in info.fields if f.name == "stream_block_ms"]
    assert isinstance(block.type, msgspec.inspect.IntType)
    assert block.type.le is not None
    return block.type.le


def kwargs(client: Redis) -> dict[str, Any]:
    return dict(client.connection_pool.connection_kwargs)


def new_connection(client: Redis) -> Any:
    """A connection as the client's pool makes it (not connected)."""
    pool: Any = client.connection_pool
    return pool.make_connection()


@pytest.mark.parametrize("blocking_reads", [False, True])
async def test_timeouts_protocol_and_health_checks_are_pinned(blocking_reads: bool) -> None:
    client = connect(URL, blocking_reads=blocking_reads, name="probe")
    try:
        kw = kwargs(client)
        assert kw["protocol"] == 2
        assert kw["decode_responses"] is False
        assert kw["socket_timeout"] == 10.0
        assert kw["socket_timeout"] > max_block_ms() / 1000  # a BLOCK never looks like a dead socket
        assert kw["socket_connect_timeout"] == 5.0
        assert kw["socket_keepalive"] is True
        assert kw["health_check_interval"] == 15
        assert kw["client_name"] == "probe"
        assert set(kw["retry_on_error"]) == {RedisConnectionError, RedisTimeoutError}
        # The URL's own parts still apply.
        assert (kw["host"], kw["port"], kw["db"]) == ("127.0.0.1", 6379, 9)
        # A connection the pool makes carries the same settings.
        conn = new_connection(client)
        assert conn.socket_timeout == 10.0
        assert conn.socket_connect_timeout == 5.0
        assert conn.protocol == 2
        assert conn.health_check_interval == 15
    finally:
        await client.aclose()


async def test_command_client_retries_three_times_with_exponential_jittered_backoff() -> None:
    client = connect(URL)
    try:
        retry = client.get_retry()
        assert isinstance(retry, Retry)
        assert retry.get_retries() == 3
        assert retry == Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), 3)
        assert new_connection(client).retry.get_retries() == 3
    finally:
        await client.aclose()


async def test_blocking_read_client_never_retries() -> None:
    client = connect(URL, blocking_reads=True)
    try:
        retry = client.get_retry()
        assert isinstance(retry, Retry)
        assert retry.get_retries() == 0
        assert retry == Retry(NoBackoff(), 0)
        assert new_connection(client).retry.get_retries() == 0
    finally:
        await client.aclose()


async def test_blocking_xreadgroup_on_an_empty_stream_returns_empty(
    redis: Redis, reader: Redis, stream_name: str
) -> None:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, "g")
    started = time.monotonic()
    reply = await reader.xreadgroup("g", "c", {key: ">"}, count=10, block=1500)
    elapsed = time.monotonic() - started
    assert not reply, reply  # nothing, not a timeout error
    assert 1.4 <= elapsed < 5.0, elapsed
    # The connection is still usable after the BLOCK ran out.
    assert await reader.ping() is True
