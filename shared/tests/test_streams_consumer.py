"""The consumer against a real redis-server: batches, acks, reclaim, lease, overlap, recovery, stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pm_shared.streams import Consumer, Delivery, Publisher
from pm_shared.streams.consumer import ACK_SCRIPT_MIN
from pm_shared.streams.membership import Membership
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.worker import Probe, probe

GROUP = "svc"  # the group of the `make_consumer` fixture's consumers (see conftest.py)

MakeConsumer = Callable[..., Consumer[Probe]]
RunUntil = Callable[..., Awaitable[None]]
Pending = Callable[[], Awaitable[int]]


async def test_batch_is_handled_and_acked(
    redis: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(250)])
    batches: list[int] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> None:
        batches.append(len(batch))

    consumer = make_consumer(handle_batch=handle_batch, count=100)
    await run_until(consumer, lambda: _true(sum(batches) == 250))
    assert batches == [100, 100, 50]
    assert await pending() == 0


async def test_a_large_batch_is_acked_in_one_script_call_with_the_next_read(
    redis: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    # Batches of ACK_SCRIPT_MIN ids or more are acked by a script with the ids in one argument.
    size = ACK_SCRIPT_MIN + 44
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(3 * size)])
    batches: list[int] = []
    left: list[int] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> None:
        if batches:
            # The previous batch's ack went with the read that brought this one.
            left.append(int((await redis.xpending(key, GROUP))["pending"]))
        batches.append(len(batch))

    consumer = make_consumer(handle_batch=handle_batch, count=size)
    await run_until(consumer, lambda: _true(sum(batches) == 3 * size))
    assert batches == [size, size, size]
    assert left == [size, size]  # only the batch in hand is pending
    assert await pending() == 0


async def test_restarted_consumer_reads_its_own_pending_entries_first(
    redis: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, run_until: RunUntil
) -> None:
    publisher = Publisher(redis)
    await publisher.publish_many(stream_name, [probe(i) for i in range(3)])
    # A previous life of c1 read these and died before acking.
    await redis.xreadgroup(GROUP, "c1", {key: ">"}, count=10)
    await publisher.publish_many(stream_name, [probe(i) for i in range(3, 6)])
    order: list[tuple[int, int]] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        order.append((delivery.message.seq, delivery.attempt))

    await run_until(make_consumer(handle=handle), lambda: _true(len(order) == 6))
    assert order == [(0, 2), (1, 2), (2, 2), (3, 1), (4, 1), (5, 1)]


async def test_entries_of_a_dead_consumer_are_reclaimed_after_the_lease(
    redis: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(5)])
    await redis.xreadgroup(GROUP, "dead", {key: ">"}, count=10)
    got: list[tuple[int, int]] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        got.append((delivery.message.seq, delivery.attempt))

    consumer = make_consumer(name="alive", handle=handle, lease_ms=300)
    await run_until(consumer, lambda: _true(len(got) == 5))
    assert sorted(got) == [(i, 2) for i in range(5)]
    assert await pending() == 0


async def test_long_handler_keeps_its_lease_and_is_not_reclaimed(
    redis: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, pending: Pending
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    calls: list[str] = []

    async def slow(delivery: Delivery[Probe]) -> None:
        calls.append("slow")
        await asyncio.sleep(1.5)  # five times the lease

    async def peer(delivery: Delivery[Probe]) -> None:
        calls.append("peer")

    owner = make_consumer(name="owner", handle=slow, lease_ms=300)
    other = make_consumer(name="peer", handle=peer, lease_ms=300)
    stop = asyncio.Event()
    owner_task = asyncio.create_task(owner.run(stop))
    await eventually(lambda: _true(calls == ["slow"]))
    other_task = asyncio.create_task(other.run(stop))
    await eventually(lambda: _later(pending(), 0), timeout=5)
    stop.set()
    await asyncio.gather(owner_task, other_task)
    assert calls == ["slow"]


async def test_a_renewal_that_dies_still_lets_the_handled_batch_be_acked_once(
    redis: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    pending: Pending,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    handled: list[int] = []

    async def slow(delivery: Delivery[Probe]) -> None:
        await asyncio.sleep(0.25)  # past a third of the lease: the renewal starts, and dies
        handled.append(delivery.attempt)

    async def refused(self: Membership, key: str, ids: list[str]) -> list[str]:
        raise ResponseError("NOGROUP No such key or consumer group")

    monkeypatch.setattr(Membership, "owned", refused)
    consumer = make_consumer(handle=slow, lease_ms=300)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: _true(handled == [1]), timeout=5)
    await eventually(lambda: _later(pending(), 0), timeout=5)
    await asyncio.sleep(0.5)  # past the lease: a batch left unacked would be reclaimed by now
    stop.set()
    await running
    assert handled == [1]  # handled once, acked: not delivered again
    assert any("lease renewal" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_renewal_whose_cancellation_is_lost_still_ends_and_the_batch_is_acked(
    redis: Redis,
    stream_name: str,
    make_consumer: MakeConsumer,
    pending: Pending,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A redis-py command can swallow the cancellation of the task awaiting it (redis-py 8.1 on Python
    # 3.11, under load); a renewal that went on renewing would hold its batch unsettled for ever.
    await Publisher(redis).publish(stream_name, probe(1))
    handled: list[int] = []

    async def slow(delivery: Delivery[Probe]) -> None:
        await asyncio.sleep(0.25)  # past a third of the lease: the renewal starts
        handled.append(delivery.attempt)

    async def deaf_claim(
        self: Membership, key: str, ids: Sequence[str], *, idle_ms: int | None = None
    ) -> None:
        try:
            await asyncio.sleep(0.2)  # the renewal is cancelled while it waits here...
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # ...and the cancellation is lost, as inside redis-py

    monkeypatch.setattr(Membership, "claim", deaf_claim)
    consumer = make_consumer(handle=slow, lease_ms=300)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: _true(handled == [1]), timeout=5)
    await eventually(lambda: _later(pending(), 0), timeout=5, what="the handled batch acked")
    stop.set()
    await asyncio.wait_for(running, 5)
    assert handled == [1]


async def test_stop_finishes_the_batch_in_hand_and_acks_it(
    redis: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, pending: Pending
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(20)])
    stop = asyncio.Event()
    started = asyncio.Event()
    finished: list[int] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.extend(d.message.seq for d in batch)

    task = asyncio.create_task(make_consumer(handle_batch=handle_batch).run(stop))
    await started.wait()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert finished == list(range(20))
    assert await pending() == 0


async def test_batches_in_flight_overlap_and_each_is_acked_when_done(
    redis: Redis, reader: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, pending: Pending
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(30)])
    release = asyncio.Event()
    running = peak = 0
    handled: list[int] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if batch[0].message.seq == 0:
            await release.wait()  # the first batch is held until the ones after it were handed over
        handled.extend(d.message.seq for d in batch)
        running -= 1

    consumer = make_consumer(handle_batch=handle_batch, count=10, batches_in_flight=2)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        # The batches after the first were read, handled and acked while it was still in hand.
        await eventually(lambda: _true(sorted(handled) == list(range(10, 30))))
        await eventually(lambda: _later(pending(), 10))
        assert peak == 2
        release.set()
        await eventually(lambda: _true(len(handled) == 30))
        await eventually(lambda: _later(pending(), 0))
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(task, 5)
    assert sorted(handled) == list(range(30))
    assert peak == 2


async def test_stop_finishes_every_batch_in_flight(
    redis: Redis, reader: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, pending: Pending
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(20)])
    stop = asyncio.Event()
    started: list[int] = []
    finished: list[int] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> None:
        started.append(batch[0].message.seq)
        await asyncio.sleep(0.3)
        finished.extend(d.message.seq for d in batch)

    consumer = make_consumer(handle_batch=handle_batch, count=10, batches_in_flight=2)
    task = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: _true(len(started) == 2))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted(finished) == list(range(20))
    assert await pending() == 0


def test_batches_in_flight_is_at_least_one(make_consumer: MakeConsumer) -> None:
    with pytest.raises(ValueError, match="batches_in_flight"):
        make_consumer(handle=_noop, batches_in_flight=0)
    with pytest.raises(ValueError, match="batches_in_flight"):
        make_consumer(handle_batch=_noop_batch, batches_in_flight=0)


async def test_a_slow_message_does_not_hold_up_the_batches_read_after_it(
    redis: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, pending: Pending
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(30)])
    release = asyncio.Event()
    handled: list[int] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        if delivery.message.seq == 0:
            await release.wait()  # a PSP that takes its time over one payout
        handled.append(delivery.message.seq)

    consumer = make_consumer(handle=handle, count=10, batches_in_flight=2)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        # With one batch in hand at a time, nothing after the first batch would be read.
        await eventually(lambda: _true(sorted(handled) == list(range(1, 30))))
        await eventually(lambda: _later(pending(), 10))  # the held batch stays unacked
        release.set()
        await eventually(lambda: _later(pending(), 0))
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(task, 5)
    assert sorted(handled) == list(range(30))


async def _noop_batch(batch: Sequence[Delivery[Probe]]) -> None:
    pass


async def test_concurrency_is_bounded(
    redis: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, run_until: RunUntil
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(40)])
    running = peak = done = 0

    async def handle(delivery: Delivery[Probe]) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        done += 1

    consumer = make_consumer(handle=handle, concurrency=4)
    await run_until(consumer, lambda: _true(done == 40))
    assert peak == 4


async def test_ready_after_own_pending_entries_are_drained(
    key: str, make_consumer: MakeConsumer, run_until: RunUntil
) -> None:
    consumer = make_consumer(handle=_noop)
    assert not consumer.ready.is_set()
    await run_until(consumer, lambda: _true(consumer.ready.is_set()))


async def _noop(delivery: Delivery[Probe]) -> None:
    return None


async def test_after_a_dropped_connection_the_consumer_re_reads_its_own_pending_entries(
    redis: Redis, redis_url: str, stream_name: str, key: str, make_consumer: MakeConsumer
) -> None:
    from pm_shared.streams.connection import connect

    reader = connect(redis_url, blocking_reads=True, name=f"reader-{stream_name}")
    handled: list[tuple[int, int]] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        handled.append((delivery.message.seq, delivery.attempt))

    entry_id = await Publisher(redis).publish(stream_name, probe(1))
    await redis.xreadgroup(GROUP, "ghost", {key: ">"}, count=1)
    consumer = make_consumer(handle=handle, reader=reader, block_ms=2_000, lease_ms=60_000)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await consumer.ready.wait()
        # As if an XREADGROUP's reply was lost: the entry is in c1's pending list, never handed over.
        await redis.xclaim(key, GROUP, "c1", 0, [entry_id], justid=True)
        clients = await redis.client_list()
        (victim,) = [c for c in clients if c.get("name") == f"reader-{stream_name}"]
        await redis.client_kill_filter(_id=victim["id"])
        await eventually(lambda: _true(handled == [(1, 2)]), timeout=5)  # long before the 60 s lease
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await reader.aclose()


async def test_recovery_and_reclaimer_never_handle_one_entry_twice(
    redis: Redis,
    reader: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(8)])
    await redis.xreadgroup(GROUP, "c1", {key: ">"}, count=10)  # a previous life of c1 died with these
    await asyncio.sleep(0.15)  # idle past the lease: the reclaimer may take them while c1 re-reads them
    calls: dict[int, int] = {}

    async def slow(delivery: Delivery[Probe]) -> None:
        calls[delivery.message.seq] = calls.get(delivery.message.seq, 0) + 1
        await asyncio.sleep(0.1)

    consumer = make_consumer(handle=slow, count=2, concurrency=1, lease_ms=100, claim_interval_ms=20)
    await run_until(consumer, lambda: _later(pending(), 0))
    assert calls == {i: 1 for i in range(8)}


async def _true(value: bool) -> bool:
    return value


async def _later(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
