"""The consumer against a real redis-server: batches, acks, retries, DLQ, reclaim, lease, recovery, stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import msgspec
import pytest
import typer
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from typer.testing import CliRunner

from pm_shared.errors import NotImplementedYet
from pm_shared.streams import Consumer, Delivery, Publisher, names
from pm_shared.streams import dlq as dlq_ops
from pm_shared.streams.names import dlq_key, stream_key
from pm_shared.streams.provision import ensure_group
from pm_tools.cli import dlq_cmd
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.worker import Probe, probe

GROUP = "svc"


def make_consumer(
    redis: Redis,
    reader: Redis,
    stream: str,
    *,
    name: str = "c1",
    handle: Callable[[Delivery[Probe]], Awaitable[None]] | None = None,
    handle_batch: Callable[[Sequence[Delivery[Probe]]], Awaitable[Any]] | None = None,
    **options: Any,
) -> Consumer[Probe]:
    settings: dict[str, Any] = {
        "block_ms": 50,
        "lease_ms": 1_000,
        "retry_delay_ms": 900,
        "claim_interval_ms": 50,
    }
    settings.update(options)
    return Consumer(
        redis=redis,
        reader=reader,
        stream=stream,
        group=GROUP,
        consumer=name,
        decoder=msgspec.json.Decoder(Probe),
        handle=handle,
        handle_batch=handle_batch,
        **settings,
    )


async def run_until(
    consumer: Consumer[Any], done: Callable[[], Awaitable[bool]], timeout: float = 10
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await eventually(done, timeout=timeout)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


@pytest.fixture
async def key(redis: Redis, stream_name: str) -> str:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, GROUP)
    return key


async def pending(redis: Redis, key: str) -> int:
    return int((await redis.xpending(key, GROUP))["pending"])


async def test_batch_is_handled_and_acked(redis: Redis, reader: Redis, stream_name: str, key: str) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(250)])
    batches: list[int] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> None:
        batches.append(len(batch))

    consumer = make_consumer(redis, reader, stream_name, handle_batch=handle_batch, count=100)
    await run_until(consumer, lambda: _true(sum(batches) == 250))
    assert batches == [100, 100, 50]
    assert await pending(redis, key) == 0


async def test_failing_handler_is_delivered_three_times_then_dead_lettered_then_replayed(
    redis: Redis, reader: Redis, redis_url: str, stream_name: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = probe(7)
    await Publisher(redis).publish(stream_name, message)
    attempts: list[int] = []
    fixed = False

    async def handle(delivery: Delivery[Probe]) -> None:
        attempts.append(delivery.attempt)
        if not fixed:
            raise RuntimeError("ledger says no")

    consumer = make_consumer(redis, reader, stream_name, handle=handle, retry_delay_ms=100)
    await run_until(consumer, lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1))
    await asyncio.sleep(0.3)  # nothing more may happen to it
    assert attempts == [1, 2, 3]
    assert await pending(redis, key) == 0
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert letter.reason == "max_deliveries"
    assert letter.fields["attempts"] == "3"
    assert letter.fields["error"] == "RuntimeError: ledger says no"
    assert letter.fields["original_stream"] == key
    assert letter.fields["group"] == GROUP
    assert letter.fields["first_failure_at"] < letter.fields["last_failure_at"]
    assert msgspec.json.decode(letter.payload or b"", type=Probe) == message

    fixed = True
    # The operator's way back: `pm dlq replay` (the test stream is made the only one it knows).
    monkeypatch.setattr(names, "ALL_STREAMS", (names.StreamSpec(stream_name, (GROUP,), "test"),))
    app = typer.Typer()
    app.add_typer(dlq_cmd.app, name="dlq")
    args = ["dlq", "replay", "--stream", stream_name, "--id", letter.id, "--yes"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env={"PM_REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert await redis.xlen(dlq_key(stream_name, 0)) == 0
    seen: list[Probe] = []

    async def record(delivery: Delivery[Probe]) -> None:
        seen.append(delivery.message)

    await run_until(make_consumer(redis, reader, stream_name, handle=record), lambda: _true(len(seen) == 1))
    assert seen[0].message_id == message.message_id  # the idempotency key survived the round trip
    assert await pending(redis, key) == 0


async def test_undecodable_entry_goes_to_the_dlq_at_once(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await redis.xadd(key, {b"m": b'{"kind": "test.probe", "seq": "not a number"}'})
    await redis.xadd(key, {b"x": b"no payload field"})
    await Publisher(redis).publish(stream_name, probe(1))
    handled: list[int] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        handled.append(delivery.message.seq)

    await run_until(
        make_consumer(redis, reader, stream_name, handle=handle),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 2),
    )
    letters = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert [(e.reason, e.fields["attempts"]) for e in letters] == [("decode_error", "1")] * 2
    assert handled == [1]
    assert await pending(redis, key) == 0


async def test_permanent_error_skips_the_retries(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    calls = 0

    async def handle(delivery: Delivery[Probe]) -> None:
        nonlocal calls
        calls += 1
        raise NotImplementedYet("later")

    await run_until(
        make_consumer(redis, reader, stream_name, handle=handle),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1),
    )
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert (calls, letter.reason) == (1, "unhandled")


async def test_one_failure_does_not_fail_its_batch_mates(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(10)])
    ok: set[int] = set()

    async def handle(delivery: Delivery[Probe]) -> None:
        if delivery.message.seq == 4:
            raise ValueError("poison")
        ok.add(delivery.message.seq)

    await run_until(
        make_consumer(redis, reader, stream_name, handle=handle, retry_delay_ms=50),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1),
    )
    assert ok == set(range(10)) - {4}
    assert await pending(redis, key) == 0


@pytest.mark.parametrize(
    "outage",
    [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        RedisConnectionError("Connection closed by server."),
    ],
    ids=type,
)
async def test_an_outage_is_waited_out_in_place_without_counting_a_delivery(
    redis: Redis, reader: Redis, stream_name: str, key: str, outage: Exception
) -> None:
    # With one delivery allowed, a failure counted as a delivery would dead-letter the entry at once.
    await Publisher(redis).publish(stream_name, probe(1))
    attempts: list[int] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        attempts.append(delivery.attempt)
        if len(attempts) <= 3:
            raise outage

    before = _transient_count(key)
    await run_until(
        make_consumer(redis, reader, stream_name, handle=handle, max_deliveries=1),
        lambda: _true(len(attempts) == 4),
    )
    assert attempts == [1, 1, 1, 1]
    await eventually(lambda: _later(pending(redis, key), 0))
    assert await redis.xlen(dlq_key(stream_name, 0)) == 0
    assert _transient_count(key) == before + 3


async def test_a_batch_handler_is_called_again_with_only_the_entries_that_met_the_outage(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(4)])
    calls: list[list[int]] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> dict[str, BaseException]:
        calls.append([d.message.seq for d in batch])
        if len(calls) > 1:
            return {}
        return {d.entry_id: ConnectionResetError(104, "reset") for d in batch if d.message.seq % 2}

    await run_until(
        make_consumer(redis, reader, stream_name, handle_batch=handle_batch, max_deliveries=1),
        lambda: _true(len(calls) == 2),
    )
    assert calls == [[0, 1, 2, 3], [1, 3]]
    await eventually(lambda: _later(pending(redis, key), 0))
    assert await redis.xlen(dlq_key(stream_name, 0)) == 0


async def test_an_outage_longer_than_the_in_place_window_counts_as_a_delivery(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    calls = 0

    async def handle(delivery: Delivery[Probe]) -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.CannotConnectNowError("the database system is shutting down")

    consumer = make_consumer(
        redis, reader, stream_name, handle=handle, max_deliveries=1, transient_retry_s=0.5
    )
    await run_until(consumer, lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1))
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert letter.reason == "max_deliveries"
    assert letter.fields["error"].startswith("CannotConnectNowError")
    assert calls == 2  # pauses of 0.2 s then 0.4 s: the second would end past the 0.5 s window


async def test_with_no_in_place_window_a_failed_outage_counts_at_once(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    # What the ledger-writer's consumer is given: its handler waits outages out itself.
    await Publisher(redis).publish(stream_name, probe(1))
    calls = 0

    async def handle(delivery: Delivery[Probe]) -> None:
        nonlocal calls
        calls += 1
        raise RedisConnectionError("the writer lease is not held")

    consumer = make_consumer(redis, reader, stream_name, handle=handle, max_deliveries=1, transient_retry_s=0)
    await run_until(consumer, lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1))
    assert calls == 1


def _transient_count(key: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "pm_stream_messages_total", {"stream": key, "group": GROUP, "outcome": "transient"}
        )
        or 0.0
    )


async def test_restarted_consumer_reads_its_own_pending_entries_first(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    publisher = Publisher(redis)
    await publisher.publish_many(stream_name, [probe(i) for i in range(3)])
    # A previous life of c1 read these and died before acking.
    await redis.xreadgroup(GROUP, "c1", {key: ">"}, count=10)
    await publisher.publish_many(stream_name, [probe(i) for i in range(3, 6)])
    order: list[tuple[int, int]] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        order.append((delivery.message.seq, delivery.attempt))

    await run_until(make_consumer(redis, reader, stream_name, handle=handle), lambda: _true(len(order) == 6))
    assert order == [(0, 2), (1, 2), (2, 2), (3, 1), (4, 1), (5, 1)]


async def test_entries_of_a_dead_consumer_are_reclaimed_after_the_lease(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(5)])
    await redis.xreadgroup(GROUP, "dead", {key: ">"}, count=10)
    got: list[tuple[int, int]] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        got.append((delivery.message.seq, delivery.attempt))

    consumer = make_consumer(redis, reader, stream_name, name="alive", handle=handle, lease_ms=300)
    await run_until(consumer, lambda: _true(len(got) == 5))
    assert sorted(got) == [(i, 2) for i in range(5)]
    assert await pending(redis, key) == 0


async def test_entry_whose_consumer_died_on_its_last_delivery_is_dead_lettered_unhandled(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    for _ in range(3):  # three consumers took it and died
        await redis.xautoclaim(key, GROUP, "dead", 0, "0-0") if await pending(redis, key) else None
        await redis.xreadgroup(GROUP, "dead", {key: ">"}, count=1)
    rows = await redis.xpending_range(key, GROUP, "-", "+", 10)
    assert rows[0]["times_delivered"] == 3
    handled: list[int] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        handled.append(delivery.message.seq)

    await run_until(
        make_consumer(redis, reader, stream_name, handle=handle, lease_ms=200),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1),
    )
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert handled == []
    assert letter.reason == "max_deliveries"
    assert "without an ack" in letter.fields["error"]


async def test_long_handler_keeps_its_lease_and_is_not_reclaimed(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    calls: list[str] = []

    async def slow(delivery: Delivery[Probe]) -> None:
        calls.append("slow")
        await asyncio.sleep(1.5)  # five times the lease

    async def peer(delivery: Delivery[Probe]) -> None:
        calls.append("peer")

    owner = make_consumer(redis, reader, stream_name, name="owner", handle=slow, lease_ms=300)
    other = make_consumer(redis, reader, stream_name, name="peer", handle=peer, lease_ms=300)
    stop = asyncio.Event()
    owner_task = asyncio.create_task(owner.run(stop))
    await eventually(lambda: _true(calls == ["slow"]))
    other_task = asyncio.create_task(other.run(stop))
    await eventually(lambda: _later(pending(redis, key), 0), timeout=5)
    stop.set()
    await asyncio.gather(owner_task, other_task)
    assert calls == ["slow"]


async def test_deleted_payload_is_dead_lettered_as_such(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    entry_id = await Publisher(redis).publish(stream_name, probe(1))
    await redis.xreadgroup(GROUP, "c1", {key: ">"}, count=1)
    await redis.xdel(key, entry_id)

    async def handle(delivery: Delivery[Probe]) -> None:
        raise AssertionError("nothing to handle")

    await run_until(
        make_consumer(redis, reader, stream_name, handle=handle),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1),
    )
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert letter.reason == "payload_deleted"
    assert await pending(redis, key) == 0


async def test_stop_finishes_the_batch_in_hand_and_acks_it(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(20)])
    stop = asyncio.Event()
    started = asyncio.Event()
    finished: list[int] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.extend(d.message.seq for d in batch)

    task = asyncio.create_task(make_consumer(redis, reader, stream_name, handle_batch=handle_batch).run(stop))
    await started.wait()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert finished == list(range(20))
    assert await pending(redis, key) == 0


async def test_batches_in_flight_overlap_and_each_is_acked_when_done(
    redis: Redis, reader: Redis, stream_name: str, key: str
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

    consumer = make_consumer(
        redis, reader, stream_name, handle_batch=handle_batch, count=10, batches_in_flight=2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        # The batches after the first were read, handled and acked while it was still in hand.
        await eventually(lambda: _true(sorted(handled) == list(range(10, 30))))
        await eventually(lambda: _later(pending(redis, key), 10))
        assert peak == 2
        release.set()
        await eventually(lambda: _true(len(handled) == 30))
        await eventually(lambda: _later(pending(redis, key), 0))
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(task, 5)
    assert sorted(handled) == list(range(30))
    assert peak == 2


async def test_stop_finishes_every_batch_in_flight(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(20)])
    stop = asyncio.Event()
    started: list[int] = []
    finished: list[int] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> None:
        started.append(batch[0].message.seq)
        await asyncio.sleep(0.3)
        finished.extend(d.message.seq for d in batch)

    consumer = make_consumer(
        redis, reader, stream_name, handle_batch=handle_batch, count=10, batches_in_flight=2
    )
    task = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: _true(len(started) == 2))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted(finished) == list(range(20))
    assert await pending(redis, key) == 0


def test_batches_in_flight_is_at_least_one(redis: Redis, reader: Redis, stream_name: str) -> None:
    with pytest.raises(ValueError, match="batches_in_flight"):
        make_consumer(redis, reader, stream_name, handle=_noop, batches_in_flight=0)
    with pytest.raises(ValueError, match="batches_in_flight"):
        make_consumer(redis, reader, stream_name, handle_batch=_noop_batch, batches_in_flight=0)


async def test_a_slow_message_does_not_hold_up_the_batches_read_after_it(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(30)])
    release = asyncio.Event()
    handled: list[int] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        if delivery.message.seq == 0:
            await release.wait()  # a PSP that takes its time over one payout
        handled.append(delivery.message.seq)

    consumer = make_consumer(redis, reader, stream_name, handle=handle, count=10, batches_in_flight=2)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        # With one batch in hand at a time, nothing after the first batch would be read.
        await eventually(lambda: _true(sorted(handled) == list(range(1, 30))))
        await eventually(lambda: _later(pending(redis, key), 10))  # the held batch stays unacked
        release.set()
        await eventually(lambda: _later(pending(redis, key), 0))
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(task, 5)
    assert sorted(handled) == list(range(30))


async def _noop_batch(batch: Sequence[Delivery[Probe]]) -> None:
    pass


async def test_concurrency_is_bounded(redis: Redis, reader: Redis, stream_name: str, key: str) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(40)])
    running = peak = done = 0

    async def handle(delivery: Delivery[Probe]) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        done += 1

    consumer = make_consumer(redis, reader, stream_name, handle=handle, concurrency=4)
    await run_until(consumer, lambda: _true(done == 40))
    assert peak == 4


async def test_ready_after_own_pending_entries_are_drained(
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    consumer = make_consumer(redis, reader, stream_name, handle=_noop)
    assert not consumer.ready.is_set()
    await run_until(consumer, lambda: _true(consumer.ready.is_set()))


async def _noop(delivery: Delivery[Probe]) -> None:
    return None


async def _true(value: bool) -> bool:
    return value


async def _later(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_after_a_dropped_connection_the_consumer_re_reads_its_own_pending_entries(
    redis: Redis, redis_url: str, stream_name: str, key: str
) -> None:
    from pm_shared.streams.connection import connect

    reader = connect(redis_url, blocking_reads=True, name=f"reader-{stream_name}")
    handled: list[tuple[int, int]] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        handled.append((delivery.message.seq, delivery.attempt))

    entry_id = await Publisher(redis).publish(stream_name, probe(1))
    await redis.xreadgroup(GROUP, "ghost", {key: ">"}, count=1)
    consumer = make_consumer(redis, reader, stream_name, handle=handle, block_ms=2_000, lease_ms=60_000)
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
    redis: Redis, reader: Redis, stream_name: str, key: str
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(8)])
    await redis.xreadgroup(GROUP, "c1", {key: ">"}, count=10)  # a previous life of c1 died with these
    await asyncio.sleep(0.15)  # idle past the lease: the reclaimer may take them while c1 re-reads them
    calls: dict[int, int] = {}

    async def slow(delivery: Delivery[Probe]) -> None:
        calls[delivery.message.seq] = calls.get(delivery.message.seq, 0) + 1
        await asyncio.sleep(0.1)

    consumer = make_consumer(
        redis, reader, stream_name, handle=slow, count=2, concurrency=1, lease_ms=100, claim_interval_ms=20
    )
    await run_until(consumer, lambda: _later(pending(redis, key), 0))
    assert calls == {i: 1 for i in range(8)}
