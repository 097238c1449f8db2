"""The writer lease on real Redis: one holder at a time, renewal and release only by the holder, takeover."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from pm_ledger_writer.lease import Lease


@pytest.fixture
async def key(redis: Redis) -> AsyncIterator[str]:
    name = f"test:lease:{uuid.uuid4().hex[:12]}"
    yield name
    await redis.delete(name)


async def test_one_holder_at_a_time_and_only_the_holder_renews_or_releases(redis: Redis, key: str) -> None:
    first, second = Lease(redis, key, 2_000), Lease(redis, key, 2_000)
    assert first.token != second.token

    assert await first.try_acquire()
    assert first.held
    assert not await second.try_acquire()
    assert not second.held
    assert await first.holder() == first.token

    # The standby can neither extend nor end the holder's lease.
    assert not await second.renew()
    assert not await second.release()
    assert await redis.get(key) == first.token.encode()

    # Renewal pushes the expiry back out to the full lease.
    await redis.pexpire(key, 300)
    assert await first.renew()
    assert 1_500 < await redis.pttl(key) <= 2_000

    # A graceful release frees the key at once for the standby.
    assert await first.release()
    assert first.remaining_s == 0  # not `held`: mypy would keep the narrowing from above
    assert await redis.get(key) is None
    assert await second.try_acquire()
    assert second.remaining_s > 0


async def test_a_standby_takes_over_after_the_holder_stops_renewing(redis: Redis, key: str) -> None:
    holder, standby = Lease(redis, key, 600), Lease(redis, key, 600)
    assert await holder.try_acquire()  # and then "dies": never renews, never releases

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(standby.acquire(stop), timeout=5)
    waited = loop.time() - started
    assert waited <= 0.6 + 0.3, waited  # within the lease, plus one standby poll
    assert standby.held
    assert not holder.held
    assert await redis.get(key) == standby.token.encode()


async def test_acquire_returns_false_when_stopped_while_standing_by(redis: Redis, key: str) -> None:
    holder, standby = Lease(redis, key, 5_000), Lease(redis, key, 5_000)
    assert await holder.try_acquire()
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    assert not await asyncio.wait_for(standby.acquire(stop), timeout=5)
    assert not standby.held


async def test_keep_renews_while_held(redis: Redis, key: str) -> None:
    lease = Lease(redis, key, 450)
    assert await lease.try_acquire()
    lost = asyncio.Event()
    keeper = asyncio.create_task(lease.keep(lost))
    try:
        await asyncio.sleep(1.5)  # more than three leases
        assert not lost.is_set()
        assert lease.held
        assert await redis.get(key) == lease.token.encode()
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)


async def test_a_lost_lease_is_detected_and_never_renewed_back(redis: Redis, key: str) -> None:
    lease, usurper = Lease(redis, key, 450), Lease(redis, key, 450)
    assert await lease.try_acquire()
    # The key expired (the holder stalled past its lease) and another process took it.
    await redis.delete(key)
    assert await usurper.try_acquire()

    lost = asyncio.Event()
    keeper = asyncio.create_task(lease.keep(lost))
    try:
        await asyncio.wait_for(lost.wait(), timeout=3)
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    assert not lease.held
    assert await redis.get(key) == usurper.token.encode()  # the new holder's lease is untouched


class Lost(asyncio.Event):
    """`lost`, remembering when it was set (the test's own wake-up may come later on a busy machine)."""

    at: float | None = None

    def set(self) -> None:
        self.at = self.at or time.monotonic()
        super().set()


async def keep_until_lost(lease: Lease) -> Lost:
    lost = Lost()
    keeper = asyncio.create_task(lease.keep(lost))
    try:
        await asyncio.wait_for(lost.wait(), timeout=5)
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    return lost


async def test_an_unreachable_redis_loses_the_lease_before_it_expires(key: str) -> None:
    # A client on a port nothing listens on: every renewal fails, as in a Redis outage.
    dead = Redis.from_url("redis://127.0.0.1:1/9", socket_connect_timeout=0.05)
    lease = Lease(dead, key, 600)
    # As if the acquiring SET had reached Redis just before the outage.
    expires = lease._valid_until = time.monotonic() + 0.6
    try:
        lost = await keep_until_lost(lease)
    finally:
        await dead.aclose()
    assert lost.at is not None and lost.at < expires, (
        "the lease must be given up before Redis could expire it"
    )
    assert not lease.held


async def test_a_renewal_that_hangs_is_given_up_before_the_lease_could_expire(key: str) -> None:
    # A Redis that takes the connection and never answers (a stalled server, a half-open link).
    taken: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        taken.append(writer)
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stalled = Redis.from_url(f"redis://127.0.0.1:{port}/9")
    lease = Lease(stalled, key, 3_000)  # renews after 1 s; gives up 0.3 s before the lease ends
    expires = lease._valid_until = time.monotonic() + 1.2
    try:
        lost = await keep_until_lost(lease)
    finally:
        await stalled.aclose()
        for writer in taken:
            writer.close()
        server.close()
        await server.wait_closed()
    assert lost.at is not None and lost.at < expires, "the writer must stop before a standby can take over"
    assert not lease.held
